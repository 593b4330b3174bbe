"""What run control shows of a run: status, position, context and the next timer.

The engine knows a run's current *step*; a flow model knows more (a saga's element and
phase, a state machine's active configuration). A flow can therefore describe its runs'
position through a hook (``Flow(position=...)``), which :meth:`Engine.describe` calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from tripwright.engine.records import EventRecord, RunRecord

__all__ = ["Position", "PositionFn", "RunSummary", "TimerInfo", "next_timer", "summarize"]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a run is, in its model's own terms.

    ``model`` names the model (``engine``, ``sequence``, ``statemachine``, ...); ``at``
    is the current step, saga element, or the active states of a state machine (its
    configuration); ``details`` holds model-specific facts (JSON), such as a saga's phase.
    """

    model: str
    at: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "at": list(self.at), "details": self.details}


#: A model's hook: the position of one of its runs (None: the engine's step is enough).
PositionFn: TypeAlias = Callable[[RunRecord], Position | None]


@dataclass(frozen=True, slots=True)
class TimerInfo:
    """A pending durable timer of a run."""

    name: str
    at: float
    event: str


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run as run control shows it (:meth:`Engine.describe`, ``tripwright runs show``)."""

    id: str
    flow: str
    version: str
    status: str
    step: str | None
    position: Position
    context: dict[str, Any]
    next_timer: TimerInfo | None
    waiting_for: tuple[str, ...] | None
    wait_deadline: float | None
    due_at: float | None
    correlation_id: str
    owner: str | None
    result: Any
    error: dict[str, Any] | None
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        timer = self.next_timer
        return {
            "id": self.id,
            "flow": self.flow,
            "version": self.version,
            "status": self.status,
            "step": self.step,
            "position": self.position.to_json(),
            "context": self.context,
            "next_timer": None
            if timer is None
            else {"name": timer.name, "at": timer.at, "event": timer.event},
            "waiting_for": None if self.waiting_for is None else list(self.waiting_for),
            "wait_deadline": self.wait_deadline,
            "next_due_at": self.due_at,
            "correlation_id": self.correlation_id,
            "owner": self.owner,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def next_timer(events: Sequence[EventRecord]) -> TimerInfo | None:
    """The earliest pending timer among a run's pending events, if any."""
    timers = [e for e in events if e.kind == "timer"]
    if not timers:
        return None
    first = min(timers, key=lambda e: (e.visible_at, e.id))
    return TimerInfo(name=first.timer_name or first.name, at=first.visible_at, event=first.name)


def summarize(
    run: RunRecord, events: Sequence[EventRecord], position: PositionFn | None = None
) -> RunSummary:
    """The summary of ``run`` given its pending events and its model's position hook."""
    described = position(run) if position is not None else None
    if described is None:
        described = Position("engine", (run.step,) if run.step else ())
    wait = run.state.get("wait") or {}
    # An event wait for any event has no names: shown as an empty tuple.
    waiting = tuple(wait.get("names") or ()) if wait.get("kind") == "event" else None
    return RunSummary(
        id=run.id,
        flow=run.flow_name,
        version=run.flow_version,
        status=run.status.value,
        step=run.step,
        position=described,
        context=run.context,
        next_timer=next_timer(events),
        waiting_for=waiting,
        wait_deadline=run.wait_deadline,
        due_at=run.due_at,
        correlation_id=run.correlation_id,
        owner=run.owner,
        result=run.result,
        error=run.error,
        created_at=run.created_at,
        updated_at=run.updated_at,
    )
