"""The Python datamodel: compiled expressions, the session namespace, JSON values.

Expressions, conditions and scripts are Python source evaluated in one namespace per
session: the datamodel variables, the helpers the chart's global script defines, and the
system variables ``_event``, ``_sessionid``, ``_name``, ``_ioprocessors`` and the function
``In(state_id)``. Source is compiled once per chart (with a file name carrying the chart
name and the element's line, so tracebacks point at the definition).

Statechart definitions are trusted code: the namespace has the full builtins, and an
expression can do anything Python can. Never run a definition from an untrusted source.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from types import CodeType
from typing import TYPE_CHECKING, Any, Literal

from tripwright.errors import ContextNotSerializableError, StatechartError
from tripwright.flows.statechart.model import Data

if TYPE_CHECKING:
    from tripwright.flows.statechart.compiled import CState
    from tripwright.flows.statechart.interpreter import Interpreter

__all__ = [
    "RESERVED",
    "Location",
    "bind_data",
    "compile_location",
    "compile_source",
    "copy_json",
    "init_datamodel",
    "is_json",
    "late_init",
    "run_global_script",
]

#: Names the interpreter owns in the namespace; never datamodel variables.
RESERVED = frozenset(
    {"__builtins__", "In", "_event", "_sessionid", "_name", "_ioprocessors", "__tw_value__"}
)

_JSON_SCALARS = (str, int, float, bool, type(None))


def is_json(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is plain JSON data (dicts with str keys, lists, scalars)."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return kind is not float or (value == value and value not in (_INF, -_INF))
    if depth > 200:
        return False
    if kind is list:
        return all(is_json(item, depth + 1) for item in value)
    if kind is dict:
        return all(type(k) is str and is_json(v, depth + 1) for k, v in value.items())
    return False


_INF = float("inf")


def compile_source(
    source: str, mode: Literal["eval", "exec"], *, chart: str, line: int | None
) -> CodeType:
    """Compile an expression (``eval``) or statements (``exec``); a syntax error is a
    :class:`StatechartError` citing the line."""
    filename = f"<statechart {chart} line {line}>" if line is not None else f"<statechart {chart}>"
    try:
        return compile(source.strip() if mode == "eval" else source, filename, mode)
    except SyntaxError as exc:
        raise StatechartError(
            f"invalid Python {'expression' if mode == 'eval' else 'script'} {source!r}: {exc.msg}",
            line=line,
            flow=chart,
        ) from None


class Location:
    """An assignment target: a variable name, or an attribute/item path below one."""

    __slots__ = ("code", "root")

    def __init__(self, root: str, code: CodeType | None) -> None:
        self.root = root
        self.code = code

    def assign(self, namespace: dict[str, Any], value: Any) -> None:
        """Store ``value`` at this location; the root variable must exist."""
        if self.root not in namespace or self.root in RESERVED:
            raise NameError(f"{self.root!r} is not a datamodel variable")
        if self.code is None:
            namespace[self.root] = value
            return
        namespace["__tw_value__"] = value
        try:
            exec(self.code, namespace)
        finally:
            del namespace["__tw_value__"]


def compile_location(location: str, *, chart: str, line: int | None) -> Location:
    """Compile an ``assign`` location such as ``count``, ``cart["items"]`` or ``trip.leg``."""
    text = location.strip()
    if text.isidentifier():
        return Location(text, None)
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        node = None
    root = node
    while isinstance(root, ast.Attribute | ast.Subscript):
        root = root.value
    if node is None or not isinstance(root, ast.Name) or root is node:
        raise StatechartError(f"not an assignable location: {location!r}", line=line, flow=chart)
    code = compile_source(f"{text} = __tw_value__", "exec", chart=chart, line=line)
    return Location(root.id, code)


def make_in(is_active: Callable[[str], bool]) -> Callable[[str], bool]:
    """The ``In(state_id)`` predicate for a session."""

    def In(state_id: str) -> bool:  # the recommendation's name
        return is_active(state_id)

    return In


def copy_json(value: Any) -> Any:
    """A deep copy of JSON data (so no two sessions or snapshots share a mutable value)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if type(value) is list:
        return [copy_json(v) for v in value]
    if type(value) is dict:
        return {k: copy_json(v) for k, v in value.items()}
    return value


def init_datamodel(session: Interpreter, data: Mapping[str, Any] | None) -> None:
    """Create the variables at start: declared data (all states' with early binding),
    then the start ``data`` (overriding declared values), then the global script."""
    chart = session.chart
    ns = session.namespace()
    declared = list(chart.global_data)
    if not chart.late:
        for s in chart.states[1:]:
            declared.extend(s.datamodel)
    given = dict(data or {})
    for key, value in given.items():
        if key in RESERVED:
            raise StatechartError(f"cannot set the system variable {key!r}")
        if not is_json(value):
            raise ContextNotSerializableError(f"start data {key!r} is not JSON data")
    for d in declared:
        bind_data(session, ns, d, given)
    for key, value in given.items():
        ns.setdefault(key, copy_json(value))
    if chart.script is not None:
        run_global_script(session, ns, report=True)


def run_global_script(session: Interpreter, ns: dict[str, Any], *, report: bool) -> None:
    """Run the chart's script; the non-JSON names it binds are helpers, not data.

    On restore (``report`` false) a failure was already reported at start.
    """
    script = session.chart.script
    assert script is not None
    before = dict(ns)
    try:
        exec(script, ns)
    except Exception as exc:
        if report:
            model = session.chart.chart.script
            session.execution_error(exc, model.line if model else None, None)
    session.helpers = {
        k: v
        for k, v in ns.items()
        if k not in RESERVED and (k not in before or before[k] is not v) and not is_json(v)
    }


def bind_data(session: Interpreter, ns: dict[str, Any], d: Data, given: dict[str, Any]) -> None:
    """Create one variable; a failing or non-JSON value binds ``None`` and raises
    ``error.execution``, as the recommendation says."""
    if d.id in given:
        ns[d.id] = copy_json(given[d.id])
        return
    try:
        if d.expr is not None:
            value = eval(session.chart.expr(d.expr, d.line), ns)
        else:
            value = copy_json(d.value)
        if not is_json(value):
            raise TypeError(f"value of data {d.id!r} is not JSON data")
    except Exception as exc:
        ns[d.id] = None
        session.execution_error(exc, d.line, session.current_state)
        return
    ns[d.id] = value


def late_init(session: Interpreter, s: CState) -> None:
    """Late binding: create a state's variables the first time it is entered."""
    initialized = session.initialized
    if initialized is None:
        initialized = session.initialized = set()
    if s.index in initialized:
        return
    initialized.add(s.index)
    ns = session.namespace()
    for d in s.datamodel:
        bind_data(session, ns, d, {})
