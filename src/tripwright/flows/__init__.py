"""Flow models on the engine: the sequence (saga) model; more models build here."""

from __future__ import annotations

from tripwright.flows.saga import (
    ALL,
    ANY,
    RACE,
    Join,
    ParallelGroup,
    Problem,
    Saga,
    SagaContext,
    SagaStep,
    WaitFor,
    at_least,
)

__all__ = [
    "ALL",
    "ANY",
    "RACE",
    "Join",
    "ParallelGroup",
    "Problem",
    "Saga",
    "SagaContext",
    "SagaStep",
    "WaitFor",
    "at_least",
]
