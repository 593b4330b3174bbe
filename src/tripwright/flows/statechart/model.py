"""The statechart definition model: immutable data that every front end produces.

A :class:`Statechart` is a tree of :class:`State` nodes with :class:`Transition` edges and
executable content (:class:`Raise`, :class:`Send`, :class:`Assign`, ...) as plain data.
The typed Python API (:mod:`.builder`), the YAML and SCXML loaders and the diagram and
validation tools all produce or read this model; the interpreter runs it with the W3C
SCXML semantics.

Every element carries an optional ``line``: the source line it came from (SCXML or YAML),
for error messages. Lines are not part of equality: a chart loaded from YAML equals the
same chart loaded from SCXML or built in Python. Expressions, conditions and scripts are
Python source text evaluated over the datamodel (see :mod:`.datamodel`), or, from the
Python API, Python callables.

Definitions are trusted code: an SCXML or YAML document's expressions and scripts run
with the full power of the Python process that loads it. Never load one from an
untrusted source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from tripwright.errors import StatechartError

if TYPE_CHECKING:
    from tripwright.flows.statechart.context import ActionContext

__all__ = [
    "Assign",
    "Call",
    "Cancel",
    "Condition",
    "Content",
    "Data",
    "DoneData",
    "Executable",
    "Foreach",
    "HistoryType",
    "If",
    "Invoke",
    "Log",
    "Param",
    "Raise",
    "Script",
    "Send",
    "State",
    "StateKind",
    "Statechart",
    "Transition",
    "TransitionType",
    "check_limit",
    "parse_delay",
]

#: A guard: a Python expression over the datamodel, or a callable given the context.
Condition: TypeAlias = "str | Callable[[ActionContext], object]"
TransitionType: TypeAlias = Literal["external", "internal"]
HistoryType: TypeAlias = Literal["shallow", "deep"]


class StateKind(StrEnum):
    """The element a state node is: ``state`` (atomic or compound), ``parallel``,
    ``final`` or ``history`` (a pseudo-state remembering a configuration)."""

    STATE = "state"
    PARALLEL = "parallel"
    FINAL = "final"
    HISTORY = "history"


# ---------------------------------------------------------------- executable content


@dataclass(frozen=True, slots=True)
class Param:
    """A named value passed with a send, an invoke or done data: ``expr`` or ``location``."""

    name: str
    expr: str | None = None
    location: str | None = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Content:
    """A payload: the value of ``expr``, or the literal JSON ``value``."""

    expr: str | None = None
    value: Any = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Raise:
    """Put ``event`` on the internal queue."""

    event: str
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Send:
    """Send an event, now or after a delay, to this session, its parent, a child or the host.

    ``target`` ``None`` (or ``#_external``) sends to this session's external queue;
    ``#_internal`` to its internal queue; ``#_parent`` to the invoking parent;
    ``#_<invokeid>`` to a child; anything else is handed to the host as an output.
    ``delay`` is in seconds (``delayexpr`` may evaluate to seconds or a duration text such
    as ``"15m"``). ``id`` (or an id generated into ``idlocation``) lets a ``Cancel`` stop a
    delayed send. The event's data is ``content`` if given, else the ``namelist``
    variables and ``params`` as a dict.
    """

    event: str | None = None
    eventexpr: str | None = None
    target: str | None = None
    targetexpr: str | None = None
    type: str | None = None
    typeexpr: str | None = None
    id: str | None = None
    idlocation: str | None = None
    delay: float | None = None
    delayexpr: str | None = None
    namelist: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    content: Content | None = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel a pending delayed send by its id (``sendid`` or the value of ``sendidexpr``)."""

    sendid: str | None = None
    sendidexpr: str | None = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Assign:
    """Set ``location`` (a Python assignment target) to ``expr`` (or the literal ``value``)."""

    location: str
    expr: str | None = None
    value: Any = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Log:
    """Emit a log entry: ``label`` and the value of ``expr``."""

    label: str | None = None
    expr: str | None = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class If:
    """``if``/``elseif``/``else``: the first branch whose condition holds runs.

    ``branches`` are ``(condition, actions)`` pairs in order; ``orelse`` runs when none holds.
    """

    branches: tuple[tuple[Condition, tuple[Executable, ...]], ...]
    orelse: tuple[Executable, ...] = ()
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Foreach:
    """Run ``actions`` for each item of the iterable ``array`` (a shallow copy of it)."""

    array: str
    item: str
    actions: tuple[Executable, ...]
    index: str | None = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Script:
    """Python statements executed over the datamodel (names they bind become variables)."""

    source: str
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    """A Python callable run as an action, given an :class:`ActionContext`."""

    fn: Callable[[ActionContext], object]
    line: int | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        """The callable's name, for audit records."""
        return str(getattr(self.fn, "__qualname__", None) or repr(self.fn))


Executable: TypeAlias = "Raise | Send | Cancel | Assign | Log | If | Foreach | Script | Call"


# ---------------------------------------------------------------- structure


@dataclass(frozen=True, slots=True)
class Data:
    """A datamodel variable: initialised from ``expr``, else the literal ``value``."""

    id: str
    expr: str | None = None
    value: Any = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class DoneData:
    """What a final state puts in its ``done.state.ID`` event: ``content`` or ``params``."""

    params: tuple[Param, ...] = ()
    content: Content | None = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Transition:
    """An edge: taken on an event matching one of ``events`` when ``cond`` holds.

    ``events`` empty makes it eventless (taken as soon as ``cond`` holds); descriptors
    match by token prefix (``booking`` matches ``booking.held``) and ``*`` matches any
    event. ``targets`` empty makes it targetless (only its actions run). An ``internal``
    transition from a compound state to its descendants does not exit the source.
    """

    events: tuple[str, ...] = ()
    cond: Condition | None = None
    targets: tuple[str, ...] = ()
    type: TransitionType = "external"
    actions: tuple[Executable, ...] = ()
    line: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.type not in ("external", "internal"):
            raise StatechartError(
                f"transition type must be 'external' or 'internal', not {self.type!r}",
                line=self.line,
            )


@dataclass(frozen=True, slots=True)
class Invoke:
    """Start a child service while the invoking state is active; cancel it on exit.

    ``type`` ``scxml`` or ``statechart`` with an inline ``content`` chart runs the child
    inside the parent's interpreter; any other type is started by the host (the
    interpreter emits an ``InvokeRequest`` and later an ``InvokeCancel``). ``finalize``
    runs before each event from the child is processed; ``autoforward`` forwards every
    external event to the child.
    """

    id: str | None = None
    idlocation: str | None = None
    type: str = "scxml"
    typeexpr: str | None = None
    src: str | None = None
    srcexpr: str | None = None
    content: Statechart | None = None
    params: tuple[Param, ...] = ()
    namelist: tuple[str, ...] = ()
    autoforward: bool = False
    finalize: tuple[Executable, ...] = ()
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class State:
    """A state node: ``kind`` says which; children are listed in document order.

    A ``state`` with child states is compound (``initial`` is its initial transition,
    defaulting to the first child), without is atomic. A ``parallel`` state's children
    are all active together. A ``final`` state may carry ``donedata``. A ``history``
    pseudo-state (``history`` ``shallow`` or ``deep``) has one ``transitions`` entry: its
    default, taken when nothing has been recorded yet.
    """

    id: str
    kind: StateKind = StateKind.STATE
    children: tuple[State, ...] = ()
    initial: Transition | None = None
    transitions: tuple[Transition, ...] = ()
    on_entry: tuple[tuple[Executable, ...], ...] = ()
    on_exit: tuple[tuple[Executable, ...], ...] = ()
    invokes: tuple[Invoke, ...] = ()
    datamodel: tuple[Data, ...] = ()
    donedata: DoneData | None = None
    history: HistoryType | None = None
    line: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.id:
            raise StatechartError("a state needs a non-empty id", line=self.line)
        if self.kind is StateKind.HISTORY:
            if self.history not in ("shallow", "deep"):
                raise StatechartError(
                    f"history state {self.id!r} must be 'shallow' or 'deep'",
                    element=self.id,
                    line=self.line,
                )
            if self.children:
                raise StatechartError(
                    f"history state {self.id!r} cannot have children",
                    element=self.id,
                    line=self.line,
                )
        elif self.history is not None:
            raise StatechartError(
                f"only history states have a history type ({self.id!r})",
                element=self.id,
                line=self.line,
            )
        if self.kind is StateKind.FINAL and self.child_states:
            raise StatechartError(
                f"final state {self.id!r} cannot have child states",
                element=self.id,
                line=self.line,
            )
        if self.donedata is not None and self.kind is not StateKind.FINAL:
            raise StatechartError(
                f"only final states have done data ({self.id!r})",
                element=self.id,
                line=self.line,
            )

    @property
    def child_states(self) -> tuple[State, ...]:
        """Children that are proper states (history pseudo-states excluded)."""
        return tuple(c for c in self.children if c.kind is not StateKind.HISTORY)

    @property
    def is_atomic(self) -> bool:
        """A ``state`` or ``final`` with no child states."""
        return self.kind in (StateKind.STATE, StateKind.FINAL) and not self.child_states

    @property
    def is_compound(self) -> bool:
        """A ``state`` with child states."""
        return self.kind is StateKind.STATE and bool(self.child_states)

    def walk(self) -> Iterator[State]:
        """This state and all its descendants, in document order."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class Statechart:
    """A whole machine: top-level ``states``, datamodel and an optional global script.

    ``initial`` is the top-level initial transition (default: the first state).
    ``binding`` ``early`` initialises every state's data at start; ``late`` when the
    state is first entered. ``script`` is Python run once before the machine starts
    (and again on restore): put helper functions and imports there, state in ``datamodel``.
    ``max_microsteps`` bounds the steps of one macrostep (``None``: the interpreter's
    default, 1000); past it the session stops with
    :class:`~tripwright.errors.StatechartLoopError`.
    """

    name: str
    states: tuple[State, ...]
    initial: Transition | None = None
    datamodel: tuple[Data, ...] = ()
    script: Script | None = None
    binding: Literal["early", "late"] = "early"
    version: int = 1
    max_microsteps: int | None = None
    line: int | None = field(default=None, compare=False)
    _index: dict[str, State] = field(init=False, repr=False, compare=False, hash=False)
    _parents: dict[str, str | None] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.states:
            raise StatechartError(f"statechart {self.name!r} has no states", line=self.line)
        if self.binding not in ("early", "late"):
            raise StatechartError(
                f"binding must be 'early' or 'late', not {self.binding!r}", line=self.line
            )
        if self.max_microsteps is not None:
            check_limit(self.max_microsteps, f"statechart {self.name!r}", self.line)
        index: dict[str, State] = {}
        parents: dict[str, str | None] = {}

        def visit(state: State, parent: str | None) -> None:
            if state.id in index:
                raise StatechartError(
                    f"duplicate state id {state.id!r} in {self.name!r}",
                    element=state.id,
                    line=state.line,
                )
            index[state.id] = state
            parents[state.id] = parent
            for child in state.children:
                visit(child, state.id)

        for top in self.states:
            visit(top, None)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_parents", parents)

    def state(self, state_id: str) -> State:
        """The state with this id; :class:`StatechartError` if there is none."""
        try:
            return self._index[state_id]
        except KeyError:
            raise StatechartError(
                f"no state {state_id!r} in statechart {self.name!r}", element=state_id
            ) from None

    def has_state(self, state_id: str) -> bool:
        """Whether a state (or history pseudo-state) has this id."""
        return state_id in self._index

    def parent_of(self, state_id: str) -> str | None:
        """The id of the state's parent; ``None`` for a top-level state."""
        self.state(state_id)
        return self._parents[state_id]

    def walk(self) -> Iterator[State]:
        """Every state in document order."""
        for top in self.states:
            yield from top.walk()

    @property
    def state_ids(self) -> tuple[str, ...]:
        """Every state id in document order."""
        return tuple(self._index)


_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_delay(value: object) -> float:
    """Seconds from a number or a duration text (``"500ms"``, ``"30s"``, ``"15m"``, ``"2h"``).

    Raises :class:`StatechartError` (also a ``ValueError``) for anything else.
    """
    if isinstance(value, bool):
        raise StatechartError(f"not a delay: {value!r}")
    if isinstance(value, int | float):
        if value < 0 or value != value:
            raise StatechartError(f"a delay cannot be negative or NaN: {value!r}")
        return float(value)
    if isinstance(value, str):
        match = _DELAY.match(value)
        if match:
            return float(match.group(1)) * _UNIT[match.group(2)]
    raise StatechartError(f"not a delay: {value!r} (use seconds or e.g. '500ms', '15m', '2h')")


def check_limit(value: object, what: str, line: int | None = None) -> int:
    """A microstep limit: a whole number of at least 1 (else :class:`StatechartError`)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StatechartError(
            f"max_microsteps of {what} must be a whole number of at least 1, not {value!r}",
            line=line,
        )
    return value
