"""Parent and child runs: a step starts a run, cancels it, and hears when it ends.

A step starts a child with :meth:`StepContext.start_child`; the child is created in the
step's own checkpoint (with a deterministic id, so a retried or resumed step never makes
a second one) and carries a link to its parent in its engine state. When the child ends,
however it ends (its last step, a failure, a cancel by an operator), the transaction that
ends it queues an event for the parent: the name the parent chose, with the child's id,
status, result or error, and the parent's own data. A step cancels a child with
:meth:`StepContext.cancel_child`, in its checkpoint too: the child's ``on_cancel`` step
cleans up (a saga compensates), and the fenced change stops a worker executing it.
"""

from __future__ import annotations

from typing import Any

from tripwright.engine import codec
from tripwright.engine.records import (
    TERMINAL_STATUSES,
    ControlChange,
    JournalKind,
    RunMessage,
    RunRecord,
    RunStatus,
)
from tripwright.errors import InvalidRunStateError

__all__ = [
    "PARENT_KEY",
    "cancel_change",
    "checkpoint_notice",
    "end_notice",
    "ended_payload",
    "parent_link",
    "stop_change",
]

#: ``run.state[PARENT_KEY]``: ``{"run_id", "event", "data"}`` of a child run.
PARENT_KEY = "parent"


def parent_link(parent_run_id: str, event: str, data: Any = None) -> dict[str, Any]:
    """The link a child run keeps: whom to tell that it ended, and how."""
    return {"run_id": parent_run_id, "event": event, "data": data}


def ended_payload(
    run_id: str, status: RunStatus, result: Any, error: Any, data: Any
) -> dict[str, Any]:
    """What a parent receives when its child ends."""
    return {
        "child": run_id,
        "status": status.value,
        "result": result,
        "error": error,
        "data": data,
    }


def end_notice(
    run_id: str, state: dict[str, Any], status: RunStatus, result: Any, error: Any
) -> RunMessage | None:
    """The event for the parent of a run that ends with ``status``; None if the run has
    no parent or does not end."""
    link = state.get(PARENT_KEY)
    if not link or status not in TERMINAL_STATUSES:
        return None
    return RunMessage(
        run_id=link["run_id"],
        name=link["event"],
        payload=codec.dumps(ended_payload(run_id, status, result, error, link.get("data"))),
        dedupe_key=f"ended:{run_id}",
    )


def checkpoint_notice(
    run_id: str, status: RunStatus, state: str, result: str | None, error: str | None
) -> RunMessage | None:
    """:func:`end_notice` for a checkpoint, whose fields arrive encoded."""
    if status not in TERMINAL_STATUSES or f'"{PARENT_KEY}"' not in state:
        return None
    return end_notice(
        run_id,
        codec.loads(state),
        status,
        None if result is None else codec.loads(result),
        None if error is None else codec.loads(error),
    )


def _refuse_ended(run: RunRecord) -> None:
    if run.is_terminal:
        raise InvalidRunStateError(
            f"run is already {run.status.value}", run_id=run.id, flow=run.flow_name
        )


def stop_change(run: RunRecord, reason: str) -> ControlChange:
    """Cancel ``run`` at once (its pending events and timers too)."""
    _refuse_ended(run)
    error = {"type": "cancelled", "message": reason}
    notice = end_notice(run.id, run.state, RunStatus.CANCELLED, None, error)
    return ControlChange(
        status=RunStatus.CANCELLED,
        step=run.step,
        state=run.state,
        due_at=None,
        error=error,
        journal_kind=JournalKind.RUN_CANCELLED,
        journal_data={"reason": reason},
        cancel_events=True,
        messages=[notice] if notice is not None else [],
    )


def cancel_change(run: RunRecord, reason: str, handler: str | None, now: float) -> ControlChange:
    """Cancel ``run``: at its clean-up step ``handler`` if it has one (which sees the
    cancel as its failure), else at once. Raises :class:`InvalidRunStateError` if the run
    has ended or is already cleaning up."""
    if handler is None:
        return stop_change(run, reason)
    _refuse_ended(run)
    if run.step == handler:
        raise InvalidRunStateError(
            "the run is already cleaning up", run_id=run.id, flow=run.flow_name
        )
    state = {
        k: v for k, v in run.state.items() if k not in ("attempt", "wait", "resume", "paused_from")
    }
    state["failure"] = {
        "step": run.step,
        "error": {"type": "Cancelled", "message": reason},
        "attempts": 0,
    }
    return ControlChange(
        status=RunStatus.RUNNING,
        step=handler,
        state=state,
        due_at=now,
        error=None,
        journal_kind=JournalKind.CANCEL_REQUESTED,
        journal_data={"reason": reason, "at_step": run.step},
    )
