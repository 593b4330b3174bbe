"""Invocations: child statecharts run inside the parent's interpreter, other services by the host.

An ``<invoke>`` of type ``scxml``/``statechart`` with an inline chart (or a ``src`` the
interpreter's ``resolve`` callable knows) starts a child :class:`Interpreter` when its
state has been entered and the macrostep is stable. The child's snapshot is nested in the
parent's; events go to it with target ``#_<invokeid>`` (and every external event when
``autoforward``) and come back to the parent's external queue from ``#_parent``, with
``invokeid`` set; when the child reaches a top-level final state the parent gets
``done.invoke.<invokeid>`` with the child's done data. Children process their queued
events after each of the parent's macrosteps, inside the same call; their macrosteps are
listed in the parent's ``Macrostep.children`` and their outputs are part of the parent's.

Any other type is the host's: the interpreter emits :class:`~.outputs.InvokeRequest` and,
when the invoking state is exited, :class:`~.outputs.InvokeCancel`; the host sends back
``done.invoke.<invokeid>`` (or error events) with ``invokeid`` set. ``finalize`` runs
before the parent processes any event carrying the invocation's id. Events from an
invocation that was cancelled are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tripwright.flows.statechart.executable import SCXML_TYPES, evaluate_payload, run_block
from tripwright.flows.statechart.model import Invoke, Statechart
from tripwright.flows.statechart.outputs import InvokeCancel, InvokeForward, InvokeRequest

if TYPE_CHECKING:
    from tripwright.flows.statechart.compiled import CState
    from tripwright.flows.statechart.events import Event
    from tripwright.flows.statechart.interpreter import Interpreter

__all__ = [
    "Invocation",
    "before_external",
    "cancel_invokes",
    "restore_invocations",
    "snapshot_invocations",
    "start_invokes",
]


@dataclass(slots=True)
class Invocation:
    """An active invocation: its state, which of the state's invokes, and the child."""

    invokeid: str
    state: int
    index: int
    autoforward: bool
    src: str | None
    child: Interpreter | None  # None: the host runs it


def invoke_of(session: Interpreter, invocation: Invocation) -> Invoke:
    """The definition element of an invocation."""
    return session.chart.states[invocation.state].invokes[invocation.index]


def child_chart(session: Interpreter, invoke: Invoke, src: str | None) -> Statechart | None:
    """The chart a child invocation runs: inline, or resolved from ``src``."""
    if invoke.content is not None:
        return invoke.content
    if src is not None and session.resolve is not None:
        return session.resolve(src)
    return None


def start_invokes(session: Interpreter, states: list[CState]) -> None:
    """Start the invocations of the states entered in the macrostep (entry order)."""
    from tripwright.flows.statechart.interpreter import Interpreter

    for s in states:
        if not session.config_mask & s.mask:
            continue  # entered and left again within the macrostep
        for index, invoke in enumerate(s.invokes):
            try:
                _start_one(session, Interpreter, s, index, invoke)
            except Exception as exc:
                session.execution_error(exc, invoke.line, s.id)


def _start_one(
    session: Interpreter, factory: type[Interpreter], s: CState, index: int, invoke: Invoke
) -> None:
    chart = session.chart
    ns = session.namespace()
    kind = (
        invoke.type
        if invoke.typeexpr is None
        else eval(chart.expr(invoke.typeexpr, invoke.line), ns)
    )
    src = (
        invoke.src if invoke.srcexpr is None else eval(chart.expr(invoke.srcexpr, invoke.line), ns)
    )
    invokeid = invoke.id
    if invokeid is None:
        session.ids += 1
        invokeid = f"{s.id}.{session.session_id}.{session.ids}"
        if invoke.idlocation is not None:
            chart.location(invoke.idlocation, invoke.line).assign(ns, invokeid)
    params = evaluate_payload(session, invoke.params, None, invoke.namelist) or {}
    if kind in SCXML_TYPES:
        child = child_chart(session, invoke, src)
        if child is None:
            raise LookupError(f"invoke {invokeid!r}: no chart inline and none known for {src!r}")
        machine = factory(
            child,
            session_id=f"{session.session_id}.{invokeid}",
            now=session.clock,
            resolve=session.resolve,
        )
        machine.attach(session, invokeid)
        session.invoked()[invokeid] = Invocation(
            invokeid, s.index, index, invoke.autoforward, src, machine
        )
        session.adopt(machine.start(params))
        return
    session.invoked()[invokeid] = Invocation(
        invokeid, s.index, index, invoke.autoforward, src, None
    )
    session.emit(
        InvokeRequest(invokeid, str(kind), src, params, invoke.autoforward, session.session_id)
    )


def cancel_invokes(session: Interpreter, s: CState) -> None:
    """Cancel every invocation of a state being exited."""
    invoked = session.invoked()
    for invokeid, invocation in list(invoked.items()):
        if invocation.state != s.index:
            continue
        del invoked[invokeid]
        if invocation.child is None:
            session.emit(InvokeCancel(invokeid, session.session_id))
        else:
            invocation.child.cancelled(session)


def before_external(session: Interpreter, event: Event) -> bool:
    """Finalize and autoforward for an external event; False if it must be ignored
    (it comes from an invocation that is no longer active)."""
    invoked = session.invoked()
    if event.invokeid is not None:
        invocation = invoked.get(event.invokeid)
        if invocation is None:
            return False
        block = invoke_of(session, invocation).finalize
        if block:
            run_block(session, block, session.chart.states[invocation.state].id)
        if event.name == f"done.invoke.{event.invokeid}":
            del invoked[event.invokeid]
    for invocation in list(invoked.values()):
        if not invocation.autoforward or invocation.invokeid == event.invokeid:
            continue
        if invocation.child is not None:
            invocation.child.enqueue(event)
        else:
            session.emit(InvokeForward(invocation.invokeid, event, session.session_id))
    return True


def snapshot_invocations(session: Interpreter) -> dict[str, Any]:
    """The invocations as JSON, children's snapshots nested."""
    return {
        invokeid: {
            "kind": "host" if inv.child is None else "child",
            "state": session.chart.states[inv.state].id,
            "index": inv.index,
            "autoforward": inv.autoforward,
            "src": inv.src,
            "snapshot": None if inv.child is None else inv.child.snapshot(),
        }
        for invokeid, inv in session.invoked().items()
    }


def restore_invocations(session: Interpreter, data: dict[str, Any]) -> None:
    """Rebuild the invocations of a snapshot (children restored and re-attached)."""
    from tripwright.flows.statechart.interpreter import Interpreter

    for invokeid, item in data.items():
        s = session.chart.by_id[item["state"]]
        child = None
        if item["kind"] == "child":
            invoke = s.invokes[item["index"]]
            chart = child_chart(session, invoke, item["src"])
            if chart is None:
                raise LookupError(f"cannot restore invocation {invokeid!r}: chart unknown")
            child = Interpreter.restore(
                chart, item["snapshot"], now=session.clock, resolve=session.resolve
            )
            child.attach(session, invokeid)
        session.invoked()[invokeid] = Invocation(
            invokeid, s.index, item["index"], item["autoforward"], item["src"], child
        )
