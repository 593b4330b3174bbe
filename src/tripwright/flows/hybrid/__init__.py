"""The hybrid model: a statechart lifecycle whose states invoke sagas as child runs and
whose transitions publish typed events to consumer groups, wired by one :class:`Hybrid`.

See ``docs/hybrid.md``.
"""

from __future__ import annotations

from tripwright.flows.hybrid.definition import Hybrid
from tripwright.flows.hybrid.flow import CANCEL, HybridFlow
from tripwright.flows.hybrid.invoker import ENDED, SAGA, SagaInvoker, child_run_id, signals
from tripwright.flows.hybrid.publishing import EVENT, TypedEvents, emit, publish

__all__ = [
    "CANCEL",
    "ENDED",
    "EVENT",
    "SAGA",
    "Hybrid",
    "HybridFlow",
    "SagaInvoker",
    "TypedEvents",
    "child_run_id",
    "emit",
    "publish",
    "signals",
]
