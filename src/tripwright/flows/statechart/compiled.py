"""A statechart compiled for the interpreter: indexed states and cached step plans.

Compiling is done once per chart and shared by every interpreter of it. States are
numbered in document order (0 is the ``<scxml>`` root, never part of a configuration),
so a configuration is an ``int`` bit mask and document order is bit order. Each state
knows its ancestors, its descendants' mask and its compiled content; every expression is
compiled once.

The SCXML algorithm's pure parts live here: transition domains, exit sets, entry sets
and conflict resolution. Their result for one configuration and one set of transitions,
a :class:`Plan`, is cached when it cannot depend on history values, so the interpreter's
hot path is a dict lookup per event.
"""

from __future__ import annotations

from collections.abc import Callable
from types import CodeType
from typing import Any, Literal

from tripwright.errors import StatechartError
from tripwright.flows.statechart.datamodel import Location, compile_location, compile_source
from tripwright.flows.statechart.events import matches
from tripwright.flows.statechart.model import (
    Assign,
    Call,
    Cancel,
    Condition,
    Executable,
    Foreach,
    If,
    Invoke,
    Log,
    Param,
    Raise,
    Script,
    Send,
    State,
    Statechart,
    StateKind,
    Transition,
)
from tripwright.flows.statechart.outputs import GuardOutcome, TakenTransition
from tripwright.flows.statechart.plans import Plan, bits, build_plan

__all__ = ["CState", "CTransition", "CompiledChart", "compile_chart"]

#: Cached entries per chart before a cache is cleared (bounds memory on huge charts).
CACHE_LIMIT = 20_000


class CTransition:
    """A transition with indices instead of ids and its condition compiled."""

    __slots__ = (
        "actions",
        "cond",
        "cond_callable",
        "domain",
        "events",
        "guard_false",
        "guard_true",
        "has_history_target",
        "index",
        "internal",
        "line",
        "source",
        "taken",
        "targets",
    )

    def __init__(
        self,
        source: int,
        index: int,
        events: tuple[str, ...],
        cond: CodeType | Callable[..., object] | None,
        targets: tuple[int, ...],
        internal: bool,
        actions: tuple[Executable, ...],
        line: int | None,
        taken: TakenTransition,
    ) -> None:
        self.source = source
        self.index = index
        self.events = events
        self.cond = cond
        self.cond_callable = cond is not None and not isinstance(cond, CodeType)
        self.targets = targets
        self.internal = internal
        self.actions = actions
        self.line = line
        self.taken = taken
        self.has_history_target = False
        self.domain: int | None = None
        self.guard_true = GuardOutcome(taken.source, index, True)
        self.guard_false = GuardOutcome(taken.source, index, False)


class CState:
    """A state with its position in the tree and its compiled parts."""

    __slots__ = (
        "ancestors",
        "child_states",
        "datamodel",
        "deep",
        "desc_mask",
        "history_children",
        "id",
        "index",
        "initial",
        "invokes",
        "is_atomic",
        "is_compound",
        "is_final",
        "is_history",
        "is_parallel",
        "line",
        "mask",
        "model",
        "on_entry",
        "on_exit",
        "parent",
        "transitions",
    )

    def __init__(self, index: int, model: State | None, parent: int) -> None:
        self.index = index
        self.model = model
        self.id = model.id if model is not None else ""
        self.parent = parent
        self.mask = 1 << index
        self.desc_mask = 0
        self.ancestors: tuple[int, ...] = ()
        self.child_states: tuple[int, ...] = ()
        self.history_children: tuple[int, ...] = ()
        self.transitions: tuple[CTransition, ...] = ()
        self.initial: CTransition | None = None
        kind = model.kind if model is not None else StateKind.STATE
        self.is_history = kind is StateKind.HISTORY
        self.is_parallel = kind is StateKind.PARALLEL
        self.is_final = kind is StateKind.FINAL
        self.is_atomic = False
        self.is_compound = False
        self.deep = model is not None and model.history == "deep"
        self.on_entry: tuple[tuple[Executable, ...], ...] = model.on_entry if model else ()
        self.on_exit: tuple[tuple[Executable, ...], ...] = model.on_exit if model else ()
        self.invokes: tuple[Invoke, ...] = model.invokes if model else ()
        self.datamodel = model.datamodel if model else ()
        self.line = model.line if model else None


class CompiledChart:
    """A chart ready to run: states in document order, compiled code, shared caches."""

    def __init__(self, chart: Statechart) -> None:
        self.chart = chart
        self.name = chart.name
        self.code: dict[tuple[str, str, int | None], CodeType] = {}
        self.locations: dict[tuple[str, int | None], Location] = {}
        self.states: list[CState] = []
        self.by_id: dict[str, CState] = {}
        root = CState(0, None, -1)
        root.is_compound = True
        self.states.append(root)
        self._number(chart.states, 0)
        self.atomic_mask = 0
        self.all_transitions: list[CTransition] = []
        for s in self.states[1:]:
            self._link(s)
        root.child_states = tuple(
            self.by_id[c.id].index for c in chart.states if c.kind is not StateKind.HISTORY
        )
        root.initial = self._initial(root, chart.initial)
        self.has_eventless = any(not t.events for t in self.all_transitions)
        self.has_history = any(s.is_history for s in self.states)
        self.has_invokes = any(s.invokes for s in self.states)
        self.late = chart.binding == "late"
        self.has_data = bool(chart.datamodel) or any(s.datamodel for s in self.states)
        self.script = (
            compile_source(chart.script.source, "exec", chart=chart.name, line=chart.script.line)
            if chart.script is not None
            else None
        )
        self.global_data = chart.datamodel
        for data in chart.datamodel:
            if data.expr is not None:
                self.expr(data.expr, data.line)
        for s in self.states:
            for data in s.datamodel:
                if data.expr is not None:
                    self.expr(data.expr, data.line)
            for block in (*s.on_entry, *s.on_exit):
                self._precompile(block)
            if s.model is not None and s.model.donedata is not None:
                self._params(s.model.donedata.params)
                if s.model.donedata.content and s.model.donedata.content.expr:
                    self.expr(s.model.donedata.content.expr, s.model.donedata.content.line)
        for t in self.all_transitions:
            self._precompile(t.actions)
        if root.initial is not None:
            self._precompile(root.initial.actions)
        # (configuration, event name or None) -> Plan | groups of candidates | None
        self.selections: dict[tuple[int, str | None], Any] = {}
        # (configuration, chosen transitions) -> Plan
        self.plans: dict[tuple[int, tuple[CTransition, ...]], Plan] = {}
        self.ids: dict[int, tuple[str, ...]] = {}

    # -- compilation

    def _number(self, states: tuple[State, ...], parent: int) -> None:
        for model in states:
            s = CState(len(self.states), model, parent)
            s.ancestors = (parent, *self.states[parent].ancestors)
            for anc in s.ancestors:
                self.states[anc].desc_mask |= s.mask
            self.states.append(s)
            self.by_id[model.id] = s
            self._number(model.children, s.index)

    def _link(self, s: CState) -> None:
        model = s.model
        assert model is not None
        s.child_states = tuple(
            self.by_id[c.id].index for c in model.children if c.kind is not StateKind.HISTORY
        )
        s.history_children = tuple(
            self.by_id[c.id].index for c in model.children if c.kind is StateKind.HISTORY
        )
        s.is_compound = model.kind is StateKind.STATE and bool(s.child_states)
        s.is_atomic = model.kind in (StateKind.STATE, StateKind.FINAL) and not s.child_states
        if s.is_atomic:
            self.atomic_mask |= s.mask
        if s.is_parallel and not s.child_states:
            s.is_atomic = True  # an empty parallel behaves as an atomic state
            self.atomic_mask |= s.mask
        if s.is_history:
            if len(model.transitions) > 1:
                raise self._error(s, "a history state has at most one default transition")
            if model.transitions and (model.transitions[0].events or model.transitions[0].cond):
                raise self._error(s, "a history default transition has no event or condition")
        s.transitions = tuple(self._transition(s, i, t) for i, t in enumerate(model.transitions))
        self.all_transitions.extend(t for t in s.transitions if not s.is_history)
        if s.is_compound:
            s.initial = self._initial(s, model.initial)
        elif model.initial is not None:
            raise self._error(s, "only compound states have an initial transition")

    def _initial(self, s: CState, initial: Transition | None) -> CTransition:
        if initial is None:
            first = s.child_states[0]
            initial = Transition(targets=(self.states[first].id,))
        if initial.events or initial.cond is not None or not initial.targets:
            raise self._error(s, "an initial transition has targets and no event or condition")
        t = self._transition(s, -1, initial, internal=True)
        for target in t.targets:
            if not self.states[target].ancestors or s.index not in self.states[target].ancestors:
                raise self._error(
                    s, f"initial target {self.states[target].id!r} is not a descendant"
                )
        return t

    def _transition(
        self, s: CState, index: int, t: Transition, *, internal: bool | None = None
    ) -> CTransition:
        targets = []
        for target in t.targets:
            if target not in self.by_id:
                raise StatechartError(
                    f"transition of {s.id or self.name!r} targets unknown state {target!r}",
                    element=s.id or None,
                    line=t.line if t.line is not None else s.line,
                    flow=self.name,
                )
            targets.append(self.by_id[target].index)
        ct = CTransition(
            source=s.index,
            index=index,
            events=t.events,
            cond=self._condition(t.cond, t.line),
            targets=tuple(targets),
            internal=(t.type == "internal") if internal is None else internal,
            actions=t.actions,
            line=t.line,
            taken=TakenTransition(s.id, index, t.targets),
        )
        return ct

    def _condition(
        self, cond: Condition | None, line: int | None
    ) -> CodeType | Callable[..., object] | None:
        if cond is None or callable(cond):
            return cond
        return self.expr(cond, line)

    def _error(self, s: CState, message: str) -> StatechartError:
        return StatechartError(
            f"state {s.id!r}: {message}", element=s.id, line=s.line, flow=self.name
        )

    def expr(self, source: str, line: int | None) -> CodeType:
        """The compiled expression (cached)."""
        return self._code(source, "eval", line)

    def script_code(self, source: str, line: int | None) -> CodeType:
        """The compiled script (cached)."""
        return self._code(source, "exec", line)

    def _code(self, source: str, mode: Literal["eval", "exec"], line: int | None) -> CodeType:
        key = (source, mode, line)
        code = self.code.get(key)
        if code is None:
            code = self.code[key] = compile_source(source, mode, chart=self.name, line=line)
        return code

    def location(self, location: str, line: int | None) -> Location:
        """The compiled assignment location (cached)."""
        key = (location, line)
        loc = self.locations.get(key)
        if loc is None:
            loc = self.locations[key] = compile_location(location, chart=self.name, line=line)
        return loc

    def _params(self, params: tuple[Param, ...]) -> None:
        for p in params:
            if p.expr is not None:
                self.expr(p.expr, p.line)
            if p.location is not None:
                self.expr(p.location, p.line)

    def _precompile(self, block: tuple[Executable, ...]) -> None:
        """Compile every expression of a block now, so syntax errors surface at load."""
        for a in block:
            if isinstance(a, Assign):
                self.location(a.location, a.line)
                if a.expr is not None:
                    self.expr(a.expr, a.line)
            elif isinstance(a, Log) and a.expr is not None:
                self.expr(a.expr, a.line)
            elif isinstance(a, Script):
                self.script_code(a.source, a.line)
            elif isinstance(a, If):
                for cond, body in a.branches:
                    self._condition(cond, a.line)
                    self._precompile(body)
                self._precompile(a.orelse)
            elif isinstance(a, Foreach):
                self.expr(a.array, a.line)
                self.location(a.item, a.line)
                if a.index is not None:
                    self.location(a.index, a.line)
                self._precompile(a.actions)
            elif isinstance(a, Send):
                for source in (a.eventexpr, a.targetexpr, a.typeexpr, a.delayexpr):
                    if source is not None:
                        self.expr(source, a.line)
                for name in a.namelist:
                    self.expr(name, a.line)
                if a.idlocation is not None:
                    self.location(a.idlocation, a.line)
                self._params(a.params)
                if a.content is not None and a.content.expr is not None:
                    self.expr(a.content.expr, a.content.line)
            elif isinstance(a, Cancel) and a.sendidexpr is not None:
                self.expr(a.sendidexpr, a.line)
            elif not isinstance(a, Raise | Call | Log | Cancel):
                raise StatechartError(f"not executable content: {a!r}", flow=self.name)

    # -- configuration helpers

    def config_ids(self, mask: int) -> tuple[str, ...]:
        """State ids of a configuration mask, in document order (cached)."""
        ids = self.ids.get(mask)
        if ids is None:
            states = self.states
            ids = tuple(states[i].id for i in bits(mask))
            if len(self.ids) >= CACHE_LIMIT:
                self.ids.clear()
            self.ids[mask] = ids
        return ids

    def mask_of(self, ids: list[str] | tuple[str, ...]) -> int:
        """The configuration mask of state ids (unknown ids are an error)."""
        mask = 0
        for state_id in ids:
            s = self.by_id.get(state_id)
            if s is None:
                raise StatechartError(f"no state {state_id!r} in {self.name!r}", element=state_id)
            mask |= s.mask
        return mask

    def in_final(self, s: CState, mask: int) -> bool:
        """Whether ``s`` is in a final state under the configuration ``mask``."""
        states = self.states
        if s.is_compound:
            return any(states[c].is_final and mask & states[c].mask for c in s.child_states)
        if s.is_parallel:
            return all(self.in_final(states[c], mask) for c in s.child_states)
        return False

    # -- selection

    def select(self, mask: int, name: str | None) -> tuple[tuple[CTransition, ...], ...] | None:
        """The candidate groups for ``(configuration, event)``, computed afresh: one tuple
        per active atomic state in document order, each the transitions matching the event
        from that state outwards up to the first without a condition."""
        states = self.states
        groups: list[tuple[CTransition, ...]] = []
        for a in bits(mask & self.atomic_mask):
            group: list[CTransition] = []
            for si in (a, *states[a].ancestors):
                for t in states[si].transitions:
                    if (not t.events) if name is None else (t.events and matches(t.events, name)):
                        group.append(t)
                        if t.cond is None:
                            break
                else:
                    continue
                break
            if group:
                groups.append(tuple(group))
        return tuple(groups) if groups else None

    def candidates(self, mask: int, name: str | None) -> Any:
        """For ``(configuration, event)``: ``None`` if nothing can be enabled, a
        :class:`Plan` if the enabled set needs no condition, else the candidate groups
        (one tuple per active atomic state, in document order) to evaluate."""
        key = (mask, name)
        found = self.selections.get(key, self)
        if found is not self:
            return found
        groups = self.select(mask, name)
        result: Any
        if groups is None:
            result = None
        elif all(t.cond is None for g in groups for t in g):
            chosen: list[CTransition] = []
            for g in groups:
                if g[0] not in chosen:
                    chosen.append(g[0])
            result = self.plan(mask, tuple(chosen), {})
            if result is None:
                result = groups  # depends on history values: evaluate each time
        else:
            result = groups
        if len(self.selections) >= CACHE_LIMIT:
            self.selections.clear()
        self.selections[key] = result
        return result

    def plan(
        self, mask: int, chosen: tuple[CTransition, ...], history: dict[int, int]
    ) -> Plan | None:
        """The cached plan for these transitions, or ``None`` if it depends on history
        values (then call :meth:`build_plan` each time)."""
        key = (mask, chosen)
        plan = self.plans.get(key)
        if plan is None:
            plan, cacheable = build_plan(self, mask, chosen, history)
            if not cacheable:
                return None
            if len(self.plans) >= CACHE_LIMIT:
                self.plans.clear()
            self.plans[key] = plan
        return plan

    def build_plan(
        self, mask: int, chosen: tuple[CTransition, ...], history: dict[int, int]
    ) -> tuple[Plan, bool]:
        """The plan for a microstep, and whether it is independent of history values."""
        return build_plan(self, mask, chosen, history)


_COMPILED: dict[int, tuple[Statechart, CompiledChart]] = {}


def compile_chart(chart: Statechart) -> CompiledChart:
    """The compiled form of ``chart``, shared by all its interpreters."""
    found = _COMPILED.get(id(chart))
    if found is not None and found[0] is chart:
        return found[1]
    compiled = CompiledChart(chart)
    if len(_COMPILED) >= 256:
        _COMPILED.clear()
    _COMPILED[id(chart)] = (chart, compiled)
    return compiled
