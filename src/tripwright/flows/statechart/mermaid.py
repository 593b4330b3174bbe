"""Mermaid ``stateDiagram-v2`` drawings of statecharts.

Compound states are drawn as composite states, a parallel state's regions are separated
by ``--``, initial transitions start at ``[*]`` and final states end at ``[*]`` in their
own scope, history pseudo-states are drawn as ``H`` (shallow) or ``H*`` (deep) with
their default transition. Transitions are labelled ``event [cond]``; a transition taken on
the event of a delayed send of its own state (a timer, as ``after()`` and ``after:``
build) is labelled ``after 15m``; other delayed sends are notes. ``active`` state ids (a
run's configuration) are highlighted with a ``classDef``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tripwright.flows.statechart.model import Condition, Send, State, Statechart, StateKind
from tripwright.flows.statechart.scxml import format_delay
from tripwright.flows.statechart.walk import executables

__all__ = ["to_mermaid"]

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED = frozenset({"state", "note", "class", "classDef", "direction", "end", "as", "style"})
ACTIVE_STYLE = "fill:#fde68a,stroke:#b45309,stroke-width:2px"


def _text(value: str) -> str:
    return re.sub(r"\s+", " ", value).replace(";", ",").replace('"', "'").strip()


def _cond(cond: Condition | None) -> str:
    if cond is None:
        return ""
    if isinstance(cond, str):
        return f"[{_text(cond)}]"
    return f"[{getattr(cond, '__name__', 'guard')}]"


class _Drawer:
    def __init__(self, chart: Statechart) -> None:
        self.chart = chart
        self.ids: dict[str, str] = {}
        self.lines: list[str] = []
        self.edges: list[str] = []
        for number, state_id in enumerate(chart.state_ids):
            plain = _PLAIN.fullmatch(state_id) and state_id not in _RESERVED
            self.ids[state_id] = state_id if plain else f"s{number}"

    def node(self, state_id: str) -> str:
        return self.ids.get(state_id, _text(state_id))

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def timers(self, state: State) -> dict[str, str]:
        """Events of the state's own delayed sends (on entry), with their delay labels."""
        out: dict[str, str] = {}
        for block in state.on_entry:
            for action in executables(block):
                if isinstance(action, Send) and action.event and action.target is None:
                    if action.delay is not None:
                        out[action.event] = f"after {format_delay(action.delay)}"
                    elif action.delayexpr is not None:
                        out[action.event] = f"after {_text(action.delayexpr)}"
        return out

    def scope(self, states: tuple[State, ...], initial: tuple[str, ...], depth: int) -> None:
        for target in initial:
            self.emit(depth, f"[*] --> {self.node(target)}")
        for state in states:
            self.state(state, depth)

    def state(self, state: State, depth: int) -> None:
        node = self.node(state.id)
        if state.kind is StateKind.HISTORY:
            mark = "H*" if state.history == "deep" else "H"
            self.emit(depth, f'state "{mark}" as {node}')
            for transition in state.transitions:
                for target in transition.targets:
                    self.edges.append(f"{node} --> {self.node(target)}")
            return
        if node != state.id:
            self.emit(depth, f'state "{_text(state.id)}" as {node}')
        if state.kind is StateKind.PARALLEL and state.child_states:
            self.emit(depth, f"state {node} {{")
            histories = [c for c in state.children if c.kind is StateKind.HISTORY]
            for history in histories:
                self.state(history, depth + 1)
            for index, region in enumerate(state.child_states):
                if index:
                    self.emit(depth + 1, "--")
                self.scope((region,), (region.id,), depth + 1)
            self.emit(depth, "}")
        elif state.is_compound:
            self.emit(depth, f"state {node} {{")
            initial = (
                state.initial.targets
                if state.initial is not None and state.initial.targets
                else (state.child_states[0].id,)
            )
            self.scope(state.children, initial, depth + 1)
            self.emit(depth, "}")
        elif state.kind is StateKind.FINAL:
            self.emit(depth, f"{node} --> [*]")
        else:
            self.emit(depth, node)
        self.transitions(state)

    def transitions(self, state: State) -> None:
        node = self.node(state.id)
        timers = self.timers(state)
        used: set[str] = set()
        for transition in state.transitions:
            events = " ".join(transition.events)
            timer = timers.get(events) if len(transition.events) == 1 else None
            if timer is not None:
                used.add(events)
            label = " ".join(
                part for part in (timer or _text(events), _cond(transition.cond)) if part
            )
            suffix = f" : {label}" if label else ""
            for target in transition.targets:
                self.edges.append(f"{node} --> {self.node(target)}{suffix}")
        for event, delay in timers.items():
            if event not in used:
                self.edges.append(f"note right of {node} : {delay} sends {_text(event)}")

    def draw(self, active: Iterable[str]) -> str:
        self.emit(0, "stateDiagram-v2")
        initial = (
            self.chart.initial.targets
            if self.chart.initial is not None and self.chart.initial.targets
            else (self.chart.states[0].id,)
        )
        self.scope(self.chart.states, initial, 1)
        self.lines.extend("    " + edge for edge in self.edges)
        highlighted = [self.node(s) for s in active if s in self.ids]
        if highlighted:
            self.emit(1, f"classDef active {ACTIVE_STYLE}")
            for node in highlighted:
                self.emit(1, f"class {node} active")
        return "\n".join(self.lines) + "\n"


def to_mermaid(chart: Statechart, *, active: Iterable[str] = ()) -> str:
    """The chart as a Mermaid ``stateDiagram-v2``; ``active`` state ids are highlighted."""
    return _Drawer(chart).draw(active)
