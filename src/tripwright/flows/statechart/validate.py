"""Static checks of a statechart: the mistakes a definition can hold before it ever runs.

:func:`validate` returns :class:`~tripwright.flows.problems.Problem` findings, each naming
the element (a state, or ``state/transition N``) and its source line when the chart came
from a document. Errors are definitions that are certainly wrong:

* a transition, initial or history default targeting an unknown state;
* an initial that is not a descendant of its state, an initial on an atomic state;
* a history state outside a compound or parallel state, or whose default leaves its
  parent (a shallow history's default must be a child of the parent, a deep one's a
  descendant);
* duplicate data or invoke ids (state ids are unique by construction);
* a non-final state with no way out: no transition of the state, of its ancestors or of
  a state in a parallel region beside it has a target;
* a transition shadowed by an earlier one of the same state that has no condition and
  matches every event it matches: it can never be taken.

Warnings are risks the checker cannot rule out:

* a state no sequence of transitions can enter (conditions ignored);
* a state from which no top-level final state can be reached (only for charts that have
  one);
* a delayed send that can never be cancelled: one with an ``id`` no ``cancel`` names, or
  without an id (nothing can name it) in a state that can be left -- it fires even after
  its state was left;
* a ``done.state.X``/``done.invoke.X`` descriptor naming no such state or invoke, and,
  when the caller lists the events the host sends (``inputs``), any descriptor that no
  input and nothing in the chart produces.

Conditions are ignored throughout (every transition is assumed possible), so a warning
may be a false alarm; an error never is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tripwright.flows.problems import Problem
from tripwright.flows.statechart.events import matches
from tripwright.flows.statechart.model import (
    Call,
    Cancel,
    Raise,
    Send,
    State,
    Statechart,
    StateKind,
    Transition,
)
from tripwright.flows.statechart.walk import state_actions

__all__ = ["validate"]

_OWN_TARGETS = (None, "#_internal", "#_external")


class _Checker:
    def __init__(self, chart: Statechart, prefix: str, inputs: frozenset[str] | None) -> None:
        self.chart = chart
        self.prefix = prefix
        self.inputs = inputs
        self.problems: list[Problem] = []

    # -- helpers

    def report(self, severity: str, element: str, message: str, line: int | None) -> None:
        self.problems.append(
            Problem(
                "error" if severity == "error" else "warning",
                f"{self.prefix}{element}",
                message,
                line,
            )
        )

    def ancestors(self, state_id: str) -> list[str]:
        out = []
        parent = self.chart.parent_of(state_id)
        while parent is not None:
            out.append(parent)
            parent = self.chart.parent_of(parent)
        return out

    def is_descendant(self, state_id: str, ancestor: str) -> bool:
        return ancestor in self.ancestors(state_id)

    def concurrent(self, state_id: str) -> Iterator[State]:
        """States that may be active together with ``state_id`` in other parallel regions."""
        branch = {state_id, *self.ancestors(state_id)}
        for ancestor in self.ancestors(state_id):
            holder = self.chart.state(ancestor)
            if holder.kind is StateKind.PARALLEL:
                for region in holder.child_states:
                    if region.id not in branch:
                        yield from region.walk()

    def transitions(self, state: State) -> Iterator[tuple[State, int, Transition]]:
        for index, transition in enumerate(state.transitions):
            yield state, index, transition

    def label(self, state: State, index: int) -> str:
        return f"{state.id}/transition {index + 1}"

    # -- checks

    def run(self) -> list[Problem]:
        self.targets()
        self.initials()
        self.histories()
        self.duplicates()
        self.shadowed()
        reachable = self.reachable()
        for state in self.chart.walk():
            if state.kind is not StateKind.HISTORY and state.id not in reachable:
                self.report(
                    "warning",
                    state.id,
                    "unreachable: no initial entry and no transition enters it",
                    state.line,
                )
        self.dead_ends(reachable)
        self.timers()
        self.events()
        for state in self.chart.walk():
            for invoke in state.invokes:
                if invoke.content is not None:
                    name = invoke.id or f"{state.id}/invoke"
                    child = _Checker(invoke.content, f"{self.prefix}{name}: ", None)
                    self.problems.extend(child.run())
        return self.problems

    def unknown(self, targets: tuple[str, ...]) -> list[str]:
        return [t for t in targets if not self.chart.has_state(t)]

    def targets(self) -> None:
        if self.chart.initial is not None:
            for target in self.unknown(self.chart.initial.targets):
                self.report(
                    "error", self.chart.name, f"initial targets unknown state {target!r}",
                    self.chart.initial.line,
                )  # fmt: skip
        for state in self.chart.walk():
            for _, index, transition in self.transitions(state):
                for target in self.unknown(transition.targets):
                    self.report(
                        "error",
                        self.label(state, index),
                        f"targets unknown state {target!r}",
                        transition.line or state.line,
                    )

    def initials(self) -> None:
        for state in self.chart.walk():
            initial = state.initial
            if initial is None:
                continue
            line = initial.line or state.line
            if not state.is_compound:
                self.report("error", state.id, "only a compound state has an initial", line)
                continue
            if initial.events or initial.cond is not None:
                self.report("error", state.id, "an initial transition has no event or cond", line)
            if not initial.targets:
                self.report("error", state.id, "the initial transition has no target", line)
            for target in initial.targets:
                if self.chart.has_state(target) and not self.is_descendant(target, state.id):
                    self.report(
                        "error",
                        state.id,
                        f"initial {target!r} is not a descendant of {state.id!r}",
                        line,
                    )
                elif not self.chart.has_state(target):
                    self.report(
                        "error", state.id, f"initial targets unknown state {target!r}", line
                    )

    def histories(self) -> None:
        for state in self.chart.walk():
            if state.kind is not StateKind.HISTORY:
                continue
            parent_id = self.chart.parent_of(state.id)
            parent = self.chart.state(parent_id) if parent_id is not None else None
            if parent is None or not parent.child_states:
                where = "at the top level" if parent is None else f"in atomic state {parent_id!r}"
                self.report(
                    "error",
                    state.id,
                    f"a history state belongs in a compound or parallel state, not {where}",
                    state.line,
                )
                continue
            if not state.transitions:
                self.report(
                    "warning",
                    state.id,
                    "no default transition: entered before it has recorded anything, it has "
                    "nowhere to go",
                    state.line,
                )
            for transition in state.transitions:
                if transition.events or transition.cond is not None:
                    self.report(
                        "error",
                        state.id,
                        "a history default transition has no event or cond",
                        transition.line or state.line,
                    )
                for target in transition.targets:
                    if not self.chart.has_state(target):
                        continue  # reported as an unknown target
                    inside = (
                        self.chart.parent_of(target) == parent.id
                        if state.history == "shallow"
                        else self.is_descendant(target, parent.id)
                    )
                    if not inside:
                        need = "a child" if state.history == "shallow" else "a descendant"
                        self.report(
                            "error",
                            state.id,
                            f"default {target!r} is not {need} of {parent.id!r}, "
                            f"as a {state.history} history's default must be",
                            transition.line or state.line,
                        )

    def duplicates(self) -> None:
        seen_data: dict[str, int | None] = {}
        seen_invokes: set[str] = set()
        data = [(self.chart.name, d) for d in self.chart.datamodel]
        data += [(s.id, d) for s in self.chart.walk() for d in s.datamodel]
        for owner, item in data:
            if item.id in seen_data:
                self.report(
                    "error", owner, f"duplicate data id {item.id!r} (one datamodel per chart)",
                    item.line,
                )  # fmt: skip
            seen_data[item.id] = item.line
        for state in self.chart.walk():
            for invoke in state.invokes:
                if invoke.id is None:
                    continue
                if invoke.id in seen_invokes:
                    self.report(
                        "error", state.id, f"duplicate invoke id {invoke.id!r}", invoke.line
                    )
                seen_invokes.add(invoke.id)

    def shadowed(self) -> None:
        for state in self.chart.walk():
            earlier: list[tuple[int, Transition]] = []
            for _, index, transition in self.transitions(state):
                for first_index, first in earlier:
                    if _covers(first, transition):
                        what = "matches every event it matches" if first.events else "is eventless"
                        self.report(
                            "error",
                            self.label(state, index),
                            f"never taken: transition {first_index + 1}{_at(first.line)} "
                            f"before it has no condition and {what}",
                            transition.line or state.line,
                        )
                        break
                if transition.cond is None:
                    earlier.append((index, transition))

    # -- reachability

    def enter(self, state_id: str, into: set[str], todo: list[str]) -> None:
        """Mark ``state_id``, its ancestors and its default entry as reachable."""
        if not self.chart.has_state(state_id):
            return
        for ancestor in self.ancestors(state_id):
            if ancestor not in into:
                into.add(ancestor)
                todo.append(ancestor)
        self.enter_down(state_id, into, todo)

    def enter_down(self, state_id: str, into: set[str], todo: list[str]) -> None:
        if state_id in into:
            return
        into.add(state_id)
        todo.append(state_id)
        state = self.chart.state(state_id)
        if state.kind is StateKind.HISTORY:
            for transition in state.transitions:
                for target in transition.targets:
                    self.enter(target, into, todo)
        elif state.kind is StateKind.PARALLEL:
            for child in state.child_states:
                self.enter_down(child.id, into, todo)
        elif state.is_compound:
            if state.initial is not None and state.initial.targets:
                for target in state.initial.targets:
                    self.enter(target, into, todo)
            else:
                self.enter_down(state.child_states[0].id, into, todo)

    def reachable(self) -> set[str]:
        into: set[str] = set()
        todo: list[str] = []
        if self.chart.initial is not None and self.chart.initial.targets:
            for target in self.chart.initial.targets:
                self.enter(target, into, todo)
        else:
            self.enter_down(self.chart.states[0].id, into, todo)
        while todo:
            state = self.chart.state(todo.pop())
            if state.kind is StateKind.HISTORY:
                continue
            for transition in state.transitions:
                for target in transition.targets:
                    self.enter(target, into, todo)
        return into

    def ways_out(self, state: State) -> list[Transition]:
        holders = [state, *(self.chart.state(a) for a in self.ancestors(state.id))]
        holders += list(self.concurrent(state.id))
        return [t for holder in holders for t in holder.transitions if t.targets]

    def dead_ends(self, reachable: set[str]) -> None:
        finals = [s.id for s in self.chart.states if s.kind is StateKind.FINAL]
        finishing = self.finishing() if finals else None
        for state in self.chart.walk():
            if not state.is_atomic or state.id not in reachable:
                continue
            parent = self.chart.parent_of(state.id)
            if state.kind is StateKind.FINAL:
                if parent is not None and not self.ways_out(state):
                    self.report(
                        "error",
                        parent,
                        f"no way out once its final state {state.id!r} is reached: no "
                        f"transition (on done.state.{parent} or another event) of it or of its "
                        "ancestors has a target",
                        state.line,
                    )
                continue
            if not self.ways_out(state):
                self.report(
                    "error",
                    state.id,
                    "no way out: it is not final and no transition of it, of its ancestors "
                    "or of a parallel region beside it has a target",
                    state.line,
                )
            elif finishing is not None and state.id not in finishing:
                self.report(
                    "warning",
                    state.id,
                    "no top-level final state can be reached from it",
                    state.line,
                )

    def finishing(self) -> set[str]:
        """Atomic states from which some transition path enters a top-level final state."""
        edges: dict[str, set[str]] = {}
        atomic = [s for s in self.chart.walk() if s.is_atomic]
        for state in atomic:
            reached: set[str] = set()
            for transition in self.ways_out(state):
                for target in transition.targets:
                    self.enter(target, reached, [])
            edges[state.id] = {s for s in reached if self.chart.state(s).is_atomic}
        done = {s.id for s in self.chart.states if s.kind is StateKind.FINAL}
        changed = True
        while changed:
            changed = False
            for state in atomic:
                if state.id not in done and edges[state.id] & done:
                    done.add(state.id)
                    changed = True
        return done

    # -- timers and events

    def all_actions(self) -> Iterator[tuple[State, object]]:
        for state in self.chart.walk():
            for action in state_actions(state):
                yield state, action

    def timers(self) -> None:
        cancels = [a for _, a in self.all_actions() if isinstance(a, Cancel)]
        named = {c.sendid for c in cancels if c.sendid is not None}
        dynamic = any(c.sendidexpr is not None for c in cancels)
        callables = any(isinstance(a, Call) for _, a in self.all_actions())
        for state, action in self.all_actions():
            if not isinstance(action, Send) or (action.delay is None and action.delayexpr is None):
                continue
            what = f"delayed send of {action.event or action.eventexpr!r}"
            if action.id is not None:
                if action.id not in named and not dynamic and not callables:
                    self.report(
                        "warning",
                        state.id,
                        f"{what} has id {action.id!r} but no cancel names it: it fires even "
                        f"after {state.id!r} is left",
                        action.line or state.line,
                    )
            elif action.idlocation is not None:
                if not dynamic and not callables:
                    self.report(
                        "warning",
                        state.id,
                        f"{what} keeps its id in {action.idlocation!r} but no cancel uses "
                        "sendidexpr: it can never be cancelled",
                        action.line or state.line,
                    )
            elif state.kind is not StateKind.FINAL or self.chart.parent_of(state.id) is not None:
                self.report(
                    "warning",
                    state.id,
                    f"{what} has no id, so nothing can cancel it: it fires even after "
                    f"{state.id!r} is left (give it an id and cancel it on exit)",
                    action.line or state.line,
                )

    def produced(self) -> tuple[set[str], bool]:
        """Event names the chart produces itself, and whether it may produce unknown ones."""
        names: set[str] = {"error.execution", "error.communication", "error.platform"}
        unknown = False
        for state in self.chart.walk():
            if state.is_compound or state.kind is StateKind.PARALLEL:
                names.add(f"done.state.{state.id}")
            for invoke in state.invokes:
                if invoke.id is None:
                    unknown = True
                else:
                    names.add(f"done.invoke.{invoke.id}")
                if invoke.content is not None:
                    unknown = True  # children send to #_parent
        for _, action in self.all_actions():
            if isinstance(action, Raise):
                names.add(action.event)
            elif isinstance(action, Send):
                if action.event is not None and action.target in _OWN_TARGETS:
                    names.add(action.event)
                elif action.eventexpr is not None or action.targetexpr is not None:
                    unknown = True
            elif isinstance(action, Call):
                unknown = True
        return names, unknown

    def events(self) -> None:
        names, unknown = self.produced()
        states = set(self.chart.state_ids)
        invokes = {i.id for s in self.chart.walk() for i in s.invokes if i.id is not None}
        for state in self.chart.walk():
            for _, index, transition in self.transitions(state):
                for descriptor in transition.events:
                    problem = _done_problem(descriptor, states, invokes)
                    if problem is None and self.inputs is not None and not unknown:
                        heard = names | self.inputs
                        if descriptor != "*" and not any(matches((descriptor,), n) for n in heard):
                            problem = "neither the chart nor the inputs produce an event it matches"
                    if problem is not None:
                        self.report(
                            "warning",
                            self.label(state, index),
                            f"event {descriptor!r}: {problem}",
                            transition.line or state.line,
                        )


def _done_problem(descriptor: str, states: set[str], invokes: set[str]) -> str | None:
    for prefix, known, what in (
        ("done.state.", states, "state"),
        ("done.invoke.", invokes, "invoke"),
    ):
        if descriptor.startswith(prefix):
            name = descriptor[len(prefix) :].removesuffix(".*").rstrip(".")
            if name and not any(k == name or k.startswith(name + ".") for k in known):
                return f"no {what} {name!r}"
    return None


def _at(line: int | None) -> str:
    return f" (line {line})" if line is not None else ""


def _descriptor_covers(first: str, later: str) -> bool:
    if first == "*":
        return True
    if later == "*":
        return False
    head = first.removesuffix(".*").rstrip(".")
    tail = later.removesuffix(".*").rstrip(".")
    return tail == head or tail.startswith(head + ".")


def _covers(first: Transition, later: Transition) -> bool:
    if not first.events or not later.events:
        return not first.events and not later.events
    return all(any(_descriptor_covers(f, lat) for f in first.events) for lat in later.events)


def validate(chart: Statechart, *, inputs: Iterable[str] | None = None) -> list[Problem]:
    """The problems of a statechart (and of the charts it invokes inline), errors first.

    ``inputs`` lists the event names the host may send; with it, descriptors that nothing
    can match are reported too.
    """
    problems = _Checker(chart, "", frozenset(inputs) if inputs is not None else None).run()
    return sorted(problems, key=lambda p: p.severity != "error")
