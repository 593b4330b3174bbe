"""Sagas invoked from statecharts as child runs.

``<invoke type="saga" src="book_trip" id="book">`` (or ``Invoke(id="book", type="saga",
src="book_trip")``) starts the saga named by ``src`` as a child run of the machine, with
the id ``<machine run id>.<invokeid>``, in the checkpoint of the macrostep that entered
the invoking state; the invoke's params and namelist are the saga's input. When the
saga's run ends, the engine queues an end notice for the machine, which becomes its own
macrostep, in order with the machine's other events:

* completed: ``done.invoke.<invokeid>``, data = the saga's result;
* failed or cancelled: ``error.invoke.<invokeid>``, data = ``{"saga", "run", "status",
  "reason", "compensated", "failure"}`` (``compensated``: the steps undone, when the
  saga compensated; ``failure``: the step and error that made it fail).

Exiting the invoking state cancels the saga (``ctx.cancel_child``: it compensates); its
end notice then arrives for an invocation that is over and is journaled as ignored. So
is the notice of an earlier invocation under an id that is active again. ``autoforward``
(and :class:`~tripwright.flows.statechart.outputs.InvokeForward`) sends the events the
saga waits for (its signals) to its run; a saga with no signals refuses to be invoked
with ``autoforward``. A ``send`` to ``#_<invokeid>`` (:class:`SagaSends`) queues one of
the saga's signals for its run, and answers ``error.communication`` for anything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from tripwright.engine import codec
from tripwright.engine.flow import StepContext
from tripwright.engine.records import EventRecord
from tripwright.flows._saga_elements import WaitFor
from tripwright.flows.saga import Saga
from tripwright.flows.statechart.events import Event
from tripwright.flows.statechart.invokers import InvokeHost, Invoker, Stale
from tripwright.flows.statechart.outputs import (
    InvokeCancel,
    InvokeForward,
    InvokeRequest,
    OutgoingEvent,
)
from tripwright.flows.statechart.processors import OUTBOX, Processor

__all__ = [
    "ENDED",
    "INVOKED_KEY",
    "SAGA",
    "SagaInvoker",
    "SagaSends",
    "child_run_id",
    "signals",
]

#: The invoke type served by :class:`SagaInvoker`.
SAGA = "saga"
#: The engine event a saga's run sends the machine when it ends.
ENDED = "tripwright.invoke.ended"
#: ``run.context[INVOKED_KEY]``: ``{"runs": {invokeid: {"run", "saga"}}, "started":
#: {invokeid: count}}``, the machine's active saga runs and how often each id was used.
INVOKED_KEY = "invoked_runs"
_MAX_RUN_ID = 64


def signals(saga: Saga) -> tuple[str, ...]:
    """The external events ``saga`` waits for (its ``wait`` steps), in order."""
    return tuple(dict.fromkeys(e.event for e in saga.elements if isinstance(e, WaitFor)))


def child_run_id(run_id: str, invokeid: str, count: int = 1) -> str:
    """The run id of the ``count``-th saga invoked as ``invokeid`` by run ``run_id``:
    ``<run>.<invokeid>`` (``~<count>`` appended from the second), hashed down to 64
    characters when longer."""
    plain = f"{run_id}.{invokeid}" + (f"~{count}" if count > 1 else "")
    if len(plain) <= _MAX_RUN_ID:
        return plain
    digest = hashlib.sha256(plain.encode()).hexdigest()[:16]
    return f"{plain[: _MAX_RUN_ID - 17]}~{digest}"


def _invoked(ctx: StepContext) -> dict[str, Any]:
    box: dict[str, Any] = ctx.context.setdefault(INVOKED_KEY, {"runs": {}, "started": {}})
    return box


class SagaInvoker(Invoker):
    """Runs invokes of type ``saga``: each starts the saga named by ``src`` as a child run."""

    replies = (ENDED,)

    def __init__(self, sagas: Mapping[str, Saga] | Iterable[Saga]) -> None:
        items = sagas.values() if isinstance(sagas, Mapping) else sagas
        self.sagas: dict[str, Saga] = {saga.name: saga for saga in items}

    def start(self, host: InvokeHost, request: InvokeRequest) -> None:
        saga = self.sagas.get(request.src or "")
        if saga is None:
            known = ", ".join(sorted(self.sagas)) or "none"
            self._refuse(host, request, f"no saga {request.src!r} to invoke (known: {known})")
            return
        if request.autoforward and not signals(saga):
            self._refuse(
                host,
                request,
                f"saga {saga.name!r} waits for no signal: autoforward has nothing to forward to",
            )
            return
        ctx = host.step_context
        box = _invoked(ctx)
        count = int(box["started"].get(request.invokeid, 0)) + 1
        run_id = child_run_id(ctx.run_id, request.invokeid, count)
        ctx.start_child(
            saga.to_flow(),
            request.params,
            run_id=run_id,
            on_end=ENDED,
            data={"invokeid": request.invokeid, "saga": saga.name},
        )
        box["started"][request.invokeid] = count
        box["runs"][request.invokeid] = {"run": run_id, "saga": saga.name}
        ctx.note("saga invoked", invokeid=request.invokeid, saga=saga.name, run=run_id)

    def cancel(self, host: InvokeHost, cancel: InvokeCancel) -> None:
        ctx = host.step_context
        entry = _invoked(ctx)["runs"].pop(cancel.invokeid, None)
        if entry is None:
            return  # it ended already (its notice was processed)
        saga = self.sagas.get(entry["saga"])
        ctx.cancel_child(
            entry["run"],
            f"invoking state exited (invoke {cancel.invokeid!r})",
            flow=saga.to_flow() if saga is not None else None,
        )
        ctx.note("saga cancelled", invokeid=cancel.invokeid, saga=entry["saga"], run=entry["run"])

    def forward(self, host: InvokeHost, forward: InvokeForward) -> None:
        self.signal(host, forward.invokeid, forward.event)  # events it waits for only

    def signal(self, host: InvokeHost, invokeid: str, event: Event) -> str | None:
        """Queue ``event`` for the saga running as ``invokeid`` if it is one of its
        signals; otherwise (or with no such saga running) return why not."""
        ctx = host.step_context
        entry = _invoked(ctx)["runs"].get(invokeid)
        saga = self.sagas.get(entry["saga"]) if entry is not None else None
        if entry is None or saga is None:
            return f"no saga is running as {invokeid!r}"
        if event.name not in signals(saga):
            waits = ", ".join(signals(saga)) or "nothing"
            return f"saga {saga.name!r} waits for {waits}, not {event.name!r}"
        key = f"{ctx.idempotency_key}/signal/{len(ctx.effects.messages)}"
        if len(key) > codec.MAX_NAME:
            key = "signal:" + hashlib.sha256(key.encode()).hexdigest()
        ctx.send_run(entry["run"], event.name, event.data, dedupe_key=key)
        return None

    def reply(self, host: InvokeHost, record: EventRecord) -> Event | Stale:
        payload: dict[str, Any] = record.payload if isinstance(record.payload, dict) else {}
        link: dict[str, Any] = payload.get("data") or {}
        invokeid = str(link.get("invokeid") or "")
        child = payload.get("child")
        status = str(payload.get("status") or "")
        runs = _invoked(host.step_context)["runs"]
        entry = runs.get(invokeid)
        if entry is None or entry["run"] != child:
            return Stale(
                f"saga run {child!r} ended ({status}) after its invocation {invokeid!r} was over"
            )
        del runs[invokeid]
        if status == "completed":
            return Event(
                f"done.invoke.{invokeid}", payload.get("result"), type="external", invokeid=invokeid
            )
        return Event(
            f"error.invoke.{invokeid}",
            _failure_data(entry, status, payload.get("error")),
            type="external",
            invokeid=invokeid,
        )

    @staticmethod
    def _refuse(host: InvokeHost, request: InvokeRequest, message: str) -> None:
        host.deliver(
            "error.execution",
            {"message": message, "type": request.type, "src": request.src},
            invokeid=request.invokeid,
        )


class SagaSends(Processor):
    """Sends to ``#_<invokeid>`` of a running saga queue one of its signals for its run
    (anything else answers ``error.communication``); other targets go to the outbox."""

    def __init__(self, invoker: SagaInvoker) -> None:
        self.invoker = invoker

    def send(self, host: InvokeHost, output: OutgoingEvent) -> None:
        if not output.target.startswith("#_"):
            OUTBOX.send(host, output)
            return
        refused = self.invoker.signal(host, output.target[2:], output.event)
        if refused is not None:
            host.deliver(
                "error.communication",
                {"message": f"cannot send {output.event.name!r} to {output.target!r}: {refused}"},
            )


def _failure_data(entry: dict[str, Any], status: str, error: Any) -> dict[str, Any]:
    """What ``error.invoke.<id>`` carries about a saga run that did not complete."""
    error = error if isinstance(error, dict) else {}
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    return {
        "saga": entry["saga"],
        "run": entry["run"],
        "status": status,
        "reason": error.get("message"),
        "compensated": details.get("compensated"),
        "failure": details.get("failure"),
    }
