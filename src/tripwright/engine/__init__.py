"""The durable engine: runs, journal, checkpoints, steps, timers, events, leases, clocks.

It knows nothing of travel. Flow models (sagas, state machines, choreographies) are
built on these primitives.
"""

from __future__ import annotations

from tripwright.engine.clock import Clock, RealClock, VirtualClock
from tripwright.engine.config import EngineConfig
from tripwright.engine.engine import Engine, new_run_id
from tripwright.engine.executor import idempotency_key
from tripwright.engine.flow import (
    Complete,
    Fail,
    Flow,
    Goto,
    Outcome,
    Sleep,
    StepContext,
    StepSpec,
    WaitEvent,
)
from tripwright.engine.records import (
    Checkpoint,
    EventRecord,
    JournalEntry,
    JournalKind,
    RunRecord,
    RunStatus,
)
from tripwright.engine.registry import FlowRegistry
from tripwright.engine.retry import RetryPolicy
from tripwright.engine.store import Store, create_store, upgrade
from tripwright.engine.summary import Position, RunSummary, TimerInfo
from tripwright.engine.worker import Worker

__all__ = [
    "Checkpoint",
    "Clock",
    "Complete",
    "Engine",
    "EngineConfig",
    "EventRecord",
    "Fail",
    "Flow",
    "FlowRegistry",
    "Goto",
    "JournalEntry",
    "JournalKind",
    "Outcome",
    "Position",
    "RealClock",
    "RetryPolicy",
    "RunRecord",
    "RunStatus",
    "RunSummary",
    "Sleep",
    "StepContext",
    "StepSpec",
    "Store",
    "TimerInfo",
    "VirtualClock",
    "WaitEvent",
    "Worker",
    "create_store",
    "idempotency_key",
    "new_run_id",
    "upgrade",
]
