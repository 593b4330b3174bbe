"""Executable content: how each element of a block runs against a session.

A block (one ``onentry``, ``onexit``, a transition's or ``finalize``'s content) runs its
elements in order; the first element that fails stops the block and puts
``error.execution`` on the internal queue, as the recommendation says. Other blocks of
the same microstep still run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tripwright.flows.statechart.datamodel import is_json
from tripwright.flows.statechart.model import (
    Assign,
    Call,
    Cancel,
    Condition,
    Content,
    Executable,
    Foreach,
    If,
    Log,
    Param,
    Raise,
    Script,
    Send,
    parse_delay,
)

if TYPE_CHECKING:
    from tripwright.flows.statechart.interpreter import Interpreter

__all__ = ["SCXML_TYPES", "ElementFailed", "evaluate_payload", "run_actions", "run_block", "test"]

#: Send/invoke types the interpreter handles itself (the SCXML event I/O processor).
SCXML_TYPES = frozenset(
    {None, "scxml", "http://www.w3.org/TR/scxml/#SCXMLEventProcessor", "statechart"}
)


class ElementFailed(Exception):
    """An element of executable content failed; carries the cause and the element's line."""

    def __init__(self, cause: Exception, line: int | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.line = line


def run_block(session: Interpreter, block: tuple[Executable, ...], state: str | None) -> None:
    """Run one block; an error stops it and raises ``error.execution``."""
    try:
        run_actions(session, block)
    except ElementFailed as failed:
        session.execution_error(failed.cause, failed.line, state)


def run_actions(session: Interpreter, actions: tuple[Executable, ...]) -> None:
    """Run elements in order; the first failure propagates as :class:`ElementFailed`."""
    for action in actions:
        try:
            _HANDLERS[type(action)](session, action)
        except ElementFailed:
            raise
        except Exception as exc:
            raise ElementFailed(exc, action.line) from exc


def test(session: Interpreter, cond: Condition, line: int | None, state: str | None) -> bool:
    """Evaluate a condition of executable content: an error counts as false."""
    try:
        if callable(cond):
            return bool(cond(session.context()))
        return bool(eval(session.chart.expr(cond, line), session.namespace()))
    except Exception as exc:
        session.execution_error(exc, line, state)
        return False


def _value(session: Interpreter, expr: str | None, literal: Any, line: int | None) -> Any:
    if expr is not None:
        return eval(session.chart.expr(expr, line), session.namespace())
    return _copy(literal)


def _copy(value: Any) -> Any:
    """A fresh copy of a literal from the definition (the model stays immutable)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    return json.loads(json.dumps(value))


def _require_json(value: Any, what: str) -> Any:
    if not is_json(value):
        raise TypeError(f"{what} is not JSON data: {type(value).__name__} {value!r:.80}")
    return value


def evaluate_payload(
    session: Interpreter,
    params: tuple[Param, ...],
    content: Content | None,
    namelist: tuple[str, ...] = (),
) -> Any:
    """The data of a send, an invoke or done data: ``content``, or a dict of names."""
    if content is not None:
        return _require_json(_value(session, content.expr, content.value, content.line), "content")
    if not params and not namelist:
        return None
    ns = session.namespace()
    data: dict[str, Any] = {}
    for name in namelist:
        data[name] = eval(session.chart.expr(name, None), ns)
    for p in params:
        source = p.expr if p.expr is not None else p.location
        if source is None:
            raise ValueError(f"param {p.name!r} has neither expr nor location")
        data[p.name] = eval(session.chart.expr(source, p.line), ns)
    return _require_json(data, "event data")


def _raise(session: Interpreter, a: Raise) -> None:
    session.raise_event(a.event, None)


def _send(session: Interpreter, a: Send) -> None:
    ns = session.namespace()
    chart = session.chart
    name = a.event if a.event is not None else _eval(session, a.eventexpr, a.line)
    if not isinstance(name, str) or not name:
        raise ValueError(f"send needs an event name, got {name!r}")
    target = a.target if a.target is not None else _eval(session, a.targetexpr, a.line)
    kind = a.type if a.type is not None else _eval(session, a.typeexpr, a.line)
    if a.delay is not None:
        delay = a.delay
    elif a.delayexpr is not None:
        delay = parse_delay(eval(chart.expr(a.delayexpr, a.line), ns))
    else:
        delay = 0.0
    data = evaluate_payload(session, a.params, a.content, a.namelist)
    sendid = a.id
    if sendid is None and a.idlocation is not None:
        sendid = session.new_sendid()
        chart.location(a.idlocation, a.line).assign(ns, sendid)
    session.send_event(name, data, delay=delay, target=target, type=kind, sendid=sendid)


def _eval(session: Interpreter, expr: str | None, line: int | None) -> Any:
    if expr is None:
        return None
    return eval(session.chart.expr(expr, line), session.namespace())


def _cancel(session: Interpreter, a: Cancel) -> None:
    sendid = a.sendid if a.sendid is not None else _eval(session, a.sendidexpr, a.line)
    if not isinstance(sendid, str):
        raise ValueError(f"cancel needs a send id, got {sendid!r}")
    session.cancel_send(sendid)


def _assign(session: Interpreter, a: Assign) -> None:
    value = _require_json(_value(session, a.expr, a.value, a.line), f"value for {a.location!r}")
    session.chart.location(a.location, a.line).assign(session.namespace(), value)


def _log(session: Interpreter, a: Log) -> None:
    value = _eval(session, a.expr, a.line)
    session.log(a.label, value if is_json(value) else repr(value))


def _if(session: Interpreter, a: If) -> None:
    for cond, body in a.branches:
        if test(session, cond, a.line, session.current_state):
            run_actions(session, body)
            return
    run_actions(session, a.orelse)


def _foreach(session: Interpreter, a: Foreach) -> None:
    ns = session.namespace()
    chart = session.chart
    array = eval(chart.expr(a.array, a.line), ns)
    items = list(array.values() if isinstance(array, dict) else array)
    item_loc = chart.location(a.item, a.line)
    index_loc = chart.location(a.index, a.line) if a.index is not None else None
    for index, item in enumerate(items):
        _require_json(item, f"foreach item {a.item!r}")
        _bind(ns, item_loc.root, item_loc.code is None)
        item_loc.assign(ns, item)
        if index_loc is not None:
            _bind(ns, index_loc.root, index_loc.code is None)
            index_loc.assign(ns, index)
        run_actions(session, a.actions)


def _bind(ns: dict[str, Any], name: str, plain: bool) -> None:
    # foreach may introduce its item and index variables (the recommendation says so)
    if plain and name not in ns:
        ns[name] = None


def _script(session: Interpreter, a: Script) -> None:
    exec(session.chart.script_code(a.source, a.line), session.namespace())


def _call(session: Interpreter, a: Call) -> None:
    a.fn(session.context())


_HANDLERS: dict[type, Callable[[Interpreter, Any], None]] = {
    Raise: _raise,
    Send: _send,
    Cancel: _cancel,
    Assign: _assign,
    Log: _log,
    If: _if,
    Foreach: _foreach,
    Script: _script,
    Call: _call,
}
