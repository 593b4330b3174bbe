"""The Mermaid flowchart of a hybrid: chart, invoked sagas, published events, groups.

The chart's states are nodes (compound and parallel states are subgraphs, finals are
rounded) with their transitions labelled by event; each saga is a subgraph of its steps
in order (the pivot marked ⟂, steps with a compensation marked ↺); a state that invokes
a saga has a dotted ``invokes`` edge to it; a state whose content publishes an event
has a dotted ``publishes`` edge to the event type, which has an edge to each handler
(in its group's subgraph) that consumes it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tripwright.flows._saga_elements import ParallelGroup, SagaStep, WaitFor
from tripwright.flows.hybrid.invoker import SAGA
from tripwright.flows.hybrid.publishing import EVENT
from tripwright.flows.statechart.model import Send, State, StateKind
from tripwright.flows.statechart.walk import executables, state_actions

if TYPE_CHECKING:
    from tripwright.flows.hybrid.definition import Hybrid
    from tripwright.flows.saga import Saga

__all__ = ["hybrid_mermaid"]


def _text(value: str) -> str:
    return re.sub(r"\s+", " ", value).replace('"', "'").strip()


class _Drawer:
    def __init__(self, hybrid: Hybrid) -> None:
        self.hybrid = hybrid
        self.lines = ["flowchart LR"]
        self.edges: list[str] = []
        self.states = {sid: f"st{i}" for i, sid in enumerate(hybrid.chart.state_ids)}
        self.sagas = {saga.name: f"sg{i}" for i, saga in enumerate(hybrid.sagas)}
        types = {k.type_name: k for k in hybrid.publishes} | {
            t: k for g in hybrid.groups for t, k in g.consumes.items()
        }
        self.types = {name: (f"ev{i}", types[name]) for i, name in enumerate(sorted(types))}

    def draw(self) -> str:
        chart = self.hybrid.chart
        self.lines.append(f'  subgraph chart["statechart {_text(chart.name)}"]')
        self.lines.append("    direction TB")
        initial = chart.initial.targets if chart.initial and chart.initial.targets else ()
        self.lines.append("    start((start))")
        for target in initial or (chart.states[0].id,):
            self.edges.append(f"  start --> {self.states[target]}")
        for state in chart.states:
            self.state(state, 2)
        self.lines.append("  end")
        for saga in self.hybrid.sagas:
            self.saga(saga)
        for name, (node, kind) in self.types.items():
            self.lines.append(f'  {node}(["{_text(name)} v{kind.version}"])')
        self.groups()
        return "\n".join(self.lines + self.edges) + "\n"

    def state(self, state: State, depth: int) -> None:
        pad = "  " * depth
        node = self.states[state.id]
        label = _text(state.id)
        if state.child_states:
            kind = "parallel " if state.kind is StateKind.PARALLEL else ""
            self.lines.append(f'{pad}subgraph {node}["{kind}{label}"]')
            for child in state.child_states:
                self.state(child, depth + 1)
            self.lines.append(f"{pad}end")
        elif state.kind is StateKind.FINAL:
            self.lines.append(f'{pad}{node}(["{label}"])')
        else:
            self.lines.append(f'{pad}{node}["{label}"]')
        for transition in state.transitions:
            events = _text(" ".join(transition.events))
            arrow = f'-->|"{events}"|' if events else "-->"
            for target in transition.targets:
                self.edges.append(f"  {node} {arrow} {self.states[target]}")
        for invoke in state.invokes:
            if invoke.type == SAGA and invoke.src in self.sagas:
                self.edges.append(f"  {node} -. invokes .-> {self.sagas[invoke.src]}")
        published = {
            a.event
            for a in executables(state_actions(state))
            if isinstance(a, Send) and a.type == EVENT and a.event in self.types
        }
        for name in sorted(published):
            self.edges.append(f"  {node} -. publishes .-> {self.types[name][0]}")

    def saga(self, saga: Saga) -> None:
        node = self.sagas[saga.name]
        self.lines.append(f'  subgraph {node}["saga {_text(saga.name)}"]')
        self.lines.append("    direction TB")
        previous: str | None = None
        for index, element in enumerate(saga.elements):
            step = f"{node}s{index}"
            if isinstance(element, ParallelGroup):
                names = ", ".join(b.name for b in element.branches)
                label = f"{element.name} (join {element.join.label}): {names}"
            elif isinstance(element, WaitFor):
                label = f"wait {element.event}"
            else:
                label = element.name
                if isinstance(element, SagaStep) and element.compensate is not None:
                    label += " ↺"
                if element.pivot:
                    label += " ⟂ pivot"
            self.lines.append(f'    {step}["{_text(label)}"]')
            if previous is not None:
                self.edges.append(f"  {previous} --> {step}")
            previous = step
        self.lines.append("  end")

    def groups(self) -> None:
        for gi, group in enumerate(self.hybrid.groups):
            self.lines.append(f'  subgraph gr{gi}["group {_text(group.name)}"]')
            for hi, spec in enumerate(group.handlers):
                handler = f"gr{gi}h{hi}"
                self.lines.append(f'    {handler}["{_text(spec.name)}"]')
                for kind in spec.consumes:
                    self.edges.append(f"  {self.types[kind.type_name][0]} --> {handler}")
                for kind in spec.publishes:
                    if kind.type_name in self.types:
                        self.edges.append(
                            f"  {handler} -. publishes .-> {self.types[kind.type_name][0]}"
                        )
            self.lines.append("  end")


def hybrid_mermaid(hybrid: Hybrid) -> str:
    """``hybrid`` as one Mermaid flowchart."""
    return _Drawer(hybrid).draw()
