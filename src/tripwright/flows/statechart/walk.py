"""Walking a statechart's executable content, and checking its Python source text.

The loaders (SCXML, YAML), the validator and the diagram writer all need to visit every
action of a chart (nested ``if``/``foreach`` bodies included) and every piece of Python
source text it holds; this module does it once.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from typing import Literal, TypeAlias

from tripwright.errors import StatechartError
from tripwright.flows.statechart.model import (
    Assign,
    Cancel,
    Condition,
    Content,
    Executable,
    Foreach,
    If,
    Log,
    Param,
    Script,
    Send,
    State,
    Statechart,
    Transition,
)

__all__ = [
    "SourceKind",
    "check_python",
    "executables",
    "not_writable",
    "python_sources",
    "source_condition",
    "state_actions",
]

#: How a piece of source text is used: an expression, statements or an assignment target.
SourceKind: TypeAlias = Literal["expression", "script", "location"]


def executables(actions: Iterable[Executable]) -> Iterator[Executable]:
    """Every action of a block in document order, descending into ``if`` and ``foreach``."""
    for action in actions:
        yield action
        if isinstance(action, If):
            for _, body in action.branches:
                yield from executables(body)
            yield from executables(action.orelse)
        elif isinstance(action, Foreach):
            yield from executables(action.actions)


def state_actions(state: State) -> Iterator[Executable]:
    """Every action a state holds: entry, exit, its transitions' and its invokes' finalize.

    An invoked child chart's own content is not included (it is another chart).
    """
    for block in (*state.on_entry, *state.on_exit):
        yield from executables(block)
    for transition in (*((state.initial,) if state.initial else ()), *state.transitions):
        yield from executables(transition.actions)
    for invoke in state.invokes:
        yield from executables(invoke.finalize)


def _params(params: Iterable[Param]) -> Iterator[tuple[str, SourceKind, int | None]]:
    for param in params:
        if param.expr is not None:
            yield param.expr, "expression", param.line
        if param.location is not None:
            yield param.location, "expression", param.line


def _content(content: Content | None) -> Iterator[tuple[str, SourceKind, int | None]]:
    if content is not None and content.expr is not None:
        yield content.expr, "expression", content.line


def _action_sources(action: Executable) -> Iterator[tuple[str, SourceKind, int | None]]:
    line = action.line
    if isinstance(action, Send):
        for text in (action.eventexpr, action.targetexpr, action.typeexpr, action.delayexpr):
            if text is not None:
                yield text, "expression", line
        if action.idlocation is not None:
            yield action.idlocation, "location", line
        for name in action.namelist:
            yield name, "expression", line
        yield from _params(action.params)
        yield from _content(action.content)
    elif isinstance(action, Cancel):
        if action.sendidexpr is not None:
            yield action.sendidexpr, "expression", line
    elif isinstance(action, Assign):
        yield action.location, "location", line
        if action.expr is not None:
            yield action.expr, "expression", line
    elif isinstance(action, Log):
        if action.expr is not None:
            yield action.expr, "expression", line
    elif isinstance(action, If):
        for cond, _ in action.branches:
            if isinstance(cond, str):
                yield cond, "expression", line
    elif isinstance(action, Foreach):
        yield action.array, "expression", line
        yield action.item, "location", line
        if action.index is not None:
            yield action.index, "location", line
    elif isinstance(action, Script):
        yield action.source, "script", line


def _transition_sources(transition: Transition) -> Iterator[tuple[str, SourceKind, int | None]]:
    if isinstance(transition.cond, str):
        yield transition.cond, "expression", transition.line


def python_sources(chart: Statechart) -> Iterator[tuple[str, SourceKind, int | None]]:
    """Every piece of Python source text of a chart (and of its inline child charts),
    with how it is used and its line."""
    for data in chart.datamodel:
        if data.expr is not None:
            yield data.expr, "expression", data.line
    if chart.script is not None:
        yield chart.script.source, "script", chart.script.line
    for state in chart.walk():
        for data in state.datamodel:
            if data.expr is not None:
                yield data.expr, "expression", data.line
        for transition in (*((state.initial,) if state.initial else ()), *state.transitions):
            yield from _transition_sources(transition)
        for action in state_actions(state):
            yield from _action_sources(action)
        if state.donedata is not None:
            yield from _params(state.donedata.params)
            yield from _content(state.donedata.content)
        for invoke in state.invokes:
            for text in (invoke.typeexpr, invoke.srcexpr):
                if text is not None:
                    yield text, "expression", invoke.line
            if invoke.idlocation is not None:
                yield invoke.idlocation, "location", invoke.line
            for name in invoke.namelist:
                yield name, "expression", invoke.line
            yield from _params(invoke.params)
            if invoke.content is not None:
                yield from python_sources(invoke.content)


def _check_location(text: str) -> str | None:
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        return exc.msg
    root = node
    while isinstance(root, ast.Attribute | ast.Subscript):
        root = root.value
    if not isinstance(root, ast.Name):
        return "not an assignable location (a name, or an attribute or item below one)"
    return None


def check_python(chart: Statechart) -> None:
    """Raise :class:`StatechartError` (with the line) for the first piece of Python source
    text that does not compile: an expression, a script or an assignment location."""
    for text, kind, line in python_sources(chart):
        reason: str | None
        if kind == "location":
            reason = _check_location(text)
        else:
            mode = "exec" if kind == "script" else "eval"
            try:
                compile(text if kind == "script" else text.strip(), "<statechart>", mode)
                reason = None
            except SyntaxError as exc:
                reason = exc.msg
        if reason is not None:
            raise StatechartError(
                f"invalid Python {kind} {text!r}: {reason}", line=line, flow=chart.name
            )


def not_writable(chart: Statechart, where: str, what: str) -> StatechartError:
    """The error for a chart element that has no document form (a Python callable)."""
    return StatechartError(
        f"statechart {chart.name!r}: {what} in {where!r} is a Python callable; only charts "
        "whose guards and actions are model elements or Python source text can be written "
        "as SCXML or YAML",
        element=where,
        flow=chart.name,
    )


def source_condition(chart: Statechart, where: str, cond: Condition | None) -> str | None:
    """A condition as source text, for writing; :func:`not_writable` if it is a callable."""
    if cond is None or isinstance(cond, str):
        return cond
    raise not_writable(chart, where, "a condition")
