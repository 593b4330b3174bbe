"""Hypothesis strategies for random statecharts and random event/timer scripts.

Charts have atomic, compound and parallel states, a top-level final state, guarded and
targetless transitions, entry/exit logs, counters, delayed sends (with and without ids),
cancels, timers (``after``) and an expression that fails (``error.execution``). They never
loop forever: no eventless transitions, no raised events and no undelayed sends, so every
macrostep ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tripwright.flows.statechart import (
    Assign,
    Cancel,
    Executable,
    Log,
    Send,
    State,
    Statechart,
    Transition,
    after,
    final,
    on,
    parallel,
    state,
    statechart,
)
from tripwright.flows.statechart.builder import After

__all__ = ["EVENTS", "Op", "charts", "scripts"]

EVENTS = ("a", "b")
SEND_IDS = ("s1", "s2")
DELAYS = (5.0, 15.0, 40.0)


@dataclass
class _Node:
    id: str
    kind: str  # atomic | compound | parallel
    children: list[_Node] = field(default_factory=list)


def _tree(draw: st.DrawFn) -> list[_Node]:
    top: list[_Node] = []
    for i in range(draw(st.integers(2, 4))):
        kind = draw(st.sampled_from(("atomic", "atomic", "compound", "parallel")))
        node = _Node(f"s{i}", kind)
        if kind == "compound":
            node.children = [_Node(f"s{i}_{j}", "atomic") for j in range(draw(st.integers(1, 3)))]
        elif kind == "parallel":
            for r in range(2):
                region = _Node(f"s{i}_r{r}", "compound")
                region.children = [_Node(f"s{i}_r{r}_{j}", "atomic") for j in range(2)]
                node.children.append(region)
        top.append(node)
    return top


def _ids(nodes: list[_Node]) -> list[str]:
    out: list[str] = []
    for node in nodes:
        out.append(node.id)
        out.extend(_ids(node.children))
    return out


def _action(draw: st.DrawFn, label: str) -> Executable:
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return Assign("n", expr="n + 1")
    if choice == 1:
        return Log(label=label, expr="n")
    if choice == 2:
        return Send(
            event=draw(st.sampled_from(EVENTS)),
            id=draw(st.sampled_from((None, *SEND_IDS))),
            delay=draw(st.sampled_from(DELAYS)),
        )
    if choice == 3:
        return Cancel(sendid=draw(st.sampled_from(SEND_IDS)))
    if choice == 4:
        return Assign("n", expr="n // 0")  # fails: error.execution
    return Assign("seen", expr="seen + [_event.name]")


def _transition(draw: st.DrawFn, targets: list[str], label: str) -> Transition:
    actions = [_action(draw, f"{label}.{k}") for k in range(draw(st.integers(0, 2)))]
    target = draw(st.one_of(st.none(), st.sampled_from(targets)))
    cond = draw(st.sampled_from((None, None, None, "n % 2 == 0", "n < 2")))
    return on(draw(st.sampled_from(EVENTS)), target, cond=cond, actions=actions)


def _build(draw: st.DrawFn, node: _Node, targets: list[str]) -> State:
    parts: list[State | Transition | After] = [_build(draw, c, targets) for c in node.children]
    for k in range(draw(st.integers(1, 3))):
        parts.append(_transition(draw, targets, f"{node.id}.{k}"))
    if node.kind != "parallel" and draw(st.integers(0, 3)) == 0:
        parts.append(after(draw(st.sampled_from(DELAYS)), draw(st.sampled_from(targets))))
    entry: list[Executable] = [Log(label=f"enter {node.id}")]
    if draw(st.booleans()):
        entry.append(_action(draw, f"{node.id}.entry"))
    exit_ = [Log(label=f"exit {node.id}")]
    if node.kind == "parallel":
        return parallel(node.id, *parts, on_entry=entry, on_exit=exit_)
    return state(node.id, *parts, on_entry=entry, on_exit=exit_)


@st.composite
def charts(draw: st.DrawFn, name: str = "random") -> Statechart:
    """A random statechart called ``name`` with a datamodel ``n`` (a counter) and
    ``seen`` (event names), ending in the top-level final state ``end``."""
    tree = _tree(draw)
    targets = [*_ids(tree), "end", "end"]  # the end is likelier than any one state
    states = [_build(draw, node, targets) for node in tree]
    return statechart(
        name,
        *states,
        final("end", donedata={"n": "n"}),
        data={"n": 0, "seen": []},
    )


#: One step of a script: ``("send", name, data)``, ``("advance", seconds)`` or
#: ``("crash", "before" | "after", nth_commit)``.
Op = tuple[Any, ...]


def scripts(*, crashes: bool = True) -> st.SearchStrategy[list[Op]]:
    """Random scripts of external events, clock advances and (optionally) crashes."""
    send = st.tuples(
        st.just("send"),
        st.sampled_from((*EVENTS, "unknown")),
        st.one_of(st.none(), st.integers(0, 3)),
    )
    advance = st.tuples(st.just("advance"), st.sampled_from((1.0, 6.0, 20.0, 45.0)))
    # sends are likelier than advances, advances than crashes
    crash = st.tuples(st.just("crash"), st.sampled_from(("before", "after")), st.integers(1, 2))
    op = st.one_of(send, send, advance, crash) if crashes else st.one_of(send, send, advance)
    return st.lists(op, min_size=4, max_size=16)
