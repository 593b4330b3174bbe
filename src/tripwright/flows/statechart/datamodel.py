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
from collections.abc import Callable
from types import CodeType
from typing import Any, Literal

from tripwright.errors import StatechartError

__all__ = [
    "RESERVED",
    "Location",
    "compile_location",
    "compile_source",
    "is_json",
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
