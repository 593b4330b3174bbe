"""Helpers for statechart tests: traced charts and runners in every execution mode."""

from __future__ import annotations

from dataclasses import replace

from tripwright.flows.statechart import Log, State, Statechart, StateKind
from tripwright.flows.statechart.memory import MachineRunner

MODES = ["plain", "restored", "general"]


def traced(chart: Statechart) -> Statechart:
    """The chart with a log entry ``enter X`` / ``exit X`` first in every state's content."""

    def visit(s: State) -> State:
        if s.kind is StateKind.HISTORY:
            return s
        return replace(
            s,
            children=tuple(visit(c) for c in s.children),
            on_entry=((Log(label=f"enter {s.id}"),), *s.on_entry),
            on_exit=((Log(label=f"exit {s.id}"),), *s.on_exit),
        )

    return replace(chart, states=tuple(visit(s) for s in chart.states))


def runner(chart: Statechart, mode: str) -> MachineRunner:
    """A runner; ``restored`` snapshots and restores after every macrostep, ``general``
    runs the plain algorithm without caches."""
    return MachineRunner(chart, restore_every_step=mode == "restored", optimise=mode != "general")


def labels(r: MachineRunner) -> list[str | None]:
    """The log labels so far, and forget them."""
    out = [e.label for e in r.log]
    r.outputs.clear()
    return out
