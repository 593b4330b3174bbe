"""Step plans: the pure part of the SCXML algorithm (Appendix D), over configuration masks.

Transition domains, exit sets, entry sets and conflict resolution depend only on the
configuration, the transitions chosen and (for history targets) the history values; their
result for a microstep is a :class:`Plan`, which :class:`~.compiled.CompiledChart` caches
when it does not depend on history values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from tripwright.errors import StatechartError
from tripwright.flows.statechart.model import Call, Executable

if TYPE_CHECKING:
    from tripwright.flows.statechart.compiled import CompiledChart, CState, CTransition

__all__ = ["Entry", "Plan", "bits", "build_plan", "remove_conflicts", "transition_domain"]


def bits(mask: int) -> Iterator[int]:
    """Indices of the set bits of ``mask``, ascending (document order)."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


class Entry:
    """One state entered by a plan, with what to run on entering it."""

    __slots__ = ("default_initial", "done_events", "history_content", "state", "stops")

    def __init__(self, state: CState) -> None:
        self.state = state
        self.default_initial: CTransition | None = None
        self.history_content: tuple[Executable, ...] = ()
        # done.state events raised after this (final) state's entry: (name, donedata state)
        self.done_events: tuple[tuple[str, CState | None], ...] = ()
        self.stops = False


class Plan:
    """What a microstep does, computed from a configuration and its transition set.

    ``exits`` in exit order, ``history`` the values recorded on exit, ``transitions`` in
    document order, ``entries`` in entry order, ``configuration`` the mask afterwards.
    ``simple`` is true when nothing runs but the configuration change (no content, no
    invokes, no history, no final state).
    """

    __slots__ = (
        "actions",
        "configuration",
        "entries",
        "exits",
        "fast",
        "history",
        "simple",
        "source_ids",
        "taken",
        "target_ids",
        "transitions",
    )

    def __init__(
        self,
        chart: CompiledChart,
        exits: tuple[CState, ...],
        history: tuple[tuple[int, int], ...],
        transitions: tuple[CTransition, ...],
        entries: tuple[Entry, ...],
        configuration: int,
        source_ids: tuple[str, ...],
        target_ids: tuple[str, ...],
    ) -> None:
        self.exits = exits
        self.history = history
        self.transitions = transitions
        self.entries = entries
        self.configuration = configuration
        self.source_ids = source_ids
        self.target_ids = target_ids
        self.taken = tuple(t.taken for t in transitions)
        labels: list[str] = []
        for s in exits:
            labels.extend(_labels(f"{s.id}.exit", block) for block in s.on_exit)
        for t in transitions:
            if t.actions:
                labels.append(_labels(f"{t.taken.source}.transition", t.actions))
        for e in entries:
            labels.extend(_labels(f"{e.state.id}.entry", block) for block in e.state.on_entry)
            if e.default_initial is not None and e.default_initial.actions:
                labels.append(_labels(f"{e.state.id}.initial", e.default_initial.actions))
            if e.history_content:
                labels.append(_labels(f"{e.state.id}.history", e.history_content))
        self.actions = tuple(labels)
        self.simple = not (
            history
            or labels
            or any(s.invokes for s in exits)
            or any(e.state.invokes or e.state.is_final or e.state.datamodel for e in entries)
        )
        # nothing can follow in the same macrostep: no eventless transition anywhere
        self.fast = self.simple and not chart.has_eventless and not chart.has_invokes


def _labels(where: str, block: tuple[Executable, ...]) -> str:
    return f"{where}: " + ", ".join(
        f"call {a.name}" if isinstance(a, Call) else type(a).__name__.lower() for a in block
    )


def effective_targets(
    chart: CompiledChart, t: CTransition, history: dict[int, int], used: list[bool]
) -> int:
    """getEffectiveTargetStates: the targets with history states replaced by their values
    (or their defaults); ``used[0]`` is set when a history state was involved."""
    states = chart.states
    out = 0
    for ti in t.targets:
        s = states[ti]
        if s.is_history:
            used[0] = True
            recorded = history.get(ti)
            if recorded is not None:
                out |= recorded
            elif s.transitions:
                out |= effective_targets(chart, s.transitions[0], history, used)
        else:
            out |= s.mask
    return out


def transition_domain(
    chart: CompiledChart, t: CTransition, history: dict[int, int], used: list[bool]
) -> int | None:
    """getTransitionDomain: the state whose descendants the transition exits/enters."""
    targets = effective_targets(chart, t, history, used)
    if not targets:
        return None
    source = chart.states[t.source]
    if t.internal and source.is_compound and targets & ~source.desc_mask == 0:
        return source.index
    return lcca(chart, source, targets)


def lcca(chart: CompiledChart, source: CState, others: int) -> int:
    """findLCCA: the nearest compound ancestor of ``source`` containing every state of
    ``others`` (0, the root, if none)."""
    states = chart.states
    for anc in source.ancestors:
        a = states[anc]
        if (a.is_compound or anc == 0) and others & ~a.desc_mask == 0:
            return anc
    return 0


def exit_mask(
    chart: CompiledChart, mask: int, t: CTransition, history: dict[int, int], used: list[bool]
) -> int:
    """computeExitSet for one transition, as a mask of active states."""
    if not t.targets:
        return 0
    d = transition_domain(chart, t, history, used)
    return 0 if d is None else mask & chart.states[d].desc_mask


def remove_conflicts(
    chart: CompiledChart,
    mask: int,
    enabled: tuple[CTransition, ...],
    history: dict[int, int],
    used: list[bool],
) -> tuple[CTransition, ...]:
    """removeConflictingTransitions: the optimal enabled transition set."""
    states = chart.states
    filtered: list[tuple[CTransition, int]] = []
    for t1 in enabled:
        exit1 = exit_mask(chart, mask, t1, history, used)
        preempted = False
        remove: list[tuple[CTransition, int]] = []
        for pair in filtered:
            if exit1 & pair[1]:
                if states[t1.source].mask & states[pair[0].source].desc_mask:
                    remove.append(pair)
                else:
                    preempted = True
                    break
        if not preempted:
            for pair in remove:
                filtered.remove(pair)
            filtered.append((t1, exit1))
    return tuple(t for t, _ in filtered)


def build_plan(
    chart: CompiledChart, mask: int, chosen: tuple[CTransition, ...], history: dict[int, int]
) -> tuple[Plan, bool]:
    """The plan for a microstep, and whether it is independent of history values."""
    used = [False]
    states = chart.states
    transitions = remove_conflicts(chart, mask, chosen, history, used)
    exit_set = 0
    for t in transitions:
        exit_set |= exit_mask(chart, mask, t, history, used)
    exits = tuple(states[i] for i in sorted(bits(exit_set), reverse=True))
    recorded: list[tuple[int, int]] = []
    for s in exits:
        for h in s.history_children:
            if states[h].deep:
                value = mask & chart.atomic_mask & s.desc_mask
            else:
                value = 0
                for c in s.child_states:
                    value |= mask & states[c].mask
            recorded.append((h, value))
    # History values recorded by this very step are seen by its entry set.
    if recorded:
        history = {**history, **dict(recorded)}
    entry = EntrySet(chart, history, used)
    for t in transitions:
        for ti in t.targets:
            entry.add_descendants(ti)
        d = transition_domain(chart, t, history, used)
        for ti in bits(effective_targets(chart, t, history, used)):
            entry.add_ancestors(ti, d)
    after_exit = mask & ~exit_set
    running = after_exit
    entries: list[Entry] = []
    for i in sorted(entry.to_enter):
        s = states[i]
        running |= s.mask
        e = Entry(s)
        e.default_initial = entry.default_entry.get(i)
        e.history_content = entry.history_content.get(i, ())
        if s.is_final:
            if s.parent == 0:
                e.stops = True
            else:
                parent = states[s.parent]
                done: list[tuple[str, CState | None]] = [(f"done.state.{parent.id}", s)]
                gp = states[parent.parent] if parent.parent > 0 else None
                if (
                    gp is not None
                    and gp.is_parallel
                    and all(chart.in_final(states[c], running) for c in gp.child_states)
                ):
                    done.append((f"done.state.{gp.id}", None))
                e.done_events = tuple(done)
        entries.append(e)
    plan = Plan(
        chart,
        exits=exits,
        history=tuple(recorded),
        transitions=transitions,
        entries=tuple(entries),
        configuration=running,
        source_ids=chart.config_ids(mask),
        target_ids=chart.config_ids(running),
    )
    return plan, not used[0]


class EntrySet:
    """computeEntrySet's working sets: states to enter, default entries, history content."""

    def __init__(self, chart: CompiledChart, history: dict[int, int], used: list[bool]) -> None:
        self.chart = chart
        self.history = history
        self.used = used
        self.to_enter: set[int] = set()
        self.default_entry: dict[int, CTransition] = {}
        self.history_content: dict[int, tuple[Executable, ...]] = {}

    def add_descendants(self, i: int) -> None:
        """addDescendantStatesToEnter."""
        states = self.chart.states
        s = states[i]
        if s.is_history:
            self.used[0] = True
            recorded = self.history.get(i)
            if recorded is not None:
                targets = tuple(bits(recorded))
            else:
                default = s.transitions[0] if s.transitions else None
                if default is None:
                    raise StatechartError(
                        f"history state {s.id!r} has no recorded value and no default",
                        element=s.id,
                        line=s.line,
                        flow=self.chart.name,
                    )
                self.history_content[s.parent] = default.actions
                targets = default.targets
            for ti in targets:
                self.add_descendants(ti)
            for ti in targets:
                self.add_ancestors(ti, s.parent)
            return
        self.to_enter.add(i)
        if s.is_compound:
            assert s.initial is not None
            self.default_entry[i] = s.initial
            for ti in s.initial.targets:
                self.add_descendants(ti)
            for ti in s.initial.targets:
                self.add_ancestors(ti, i)
        elif s.is_parallel:
            self._enter_regions(s)

    def add_ancestors(self, i: int, ancestor: int | None) -> None:
        """addAncestorStatesToEnter: ancestors of ``i`` below ``ancestor``."""
        states = self.chart.states
        for anc in states[i].ancestors:
            if anc == ancestor or anc == 0:
                break
            self.to_enter.add(anc)
            if states[anc].is_parallel:
                self._enter_regions(states[anc])

    def _enter_regions(self, parallel: CState) -> None:
        states = self.chart.states
        for c in parallel.child_states:
            if not any(x in self.to_enter for x in bits(states[c].desc_mask)):
                self.add_descendants(c)
