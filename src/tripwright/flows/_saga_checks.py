"""Checks and Mermaid diagrams of saga definitions (:meth:`Saga.validate`, ``to_mermaid``)."""

from __future__ import annotations

from collections.abc import Sequence

from tripwright.flows._saga_elements import Element, ParallelGroup, Problem, SagaStep, WaitFor

__all__ = ["saga_mermaid", "saga_problems"]


def _pivot_index(elements: Sequence[Element]) -> int | None:
    return next((i for i, e in enumerate(elements) if e.pivot), None)


def saga_problems(name: str, elements: Sequence[Element]) -> list[Problem]:
    """Problems with a saga's elements: errors make it unrunnable, warnings are risks."""
    if not elements:
        return [Problem("error", name, "the saga has no steps")]
    problems: list[Problem] = []
    pivots = [e.name for e in elements if e.pivot]
    if len(pivots) > 1:
        problems.append(
            Problem("error", pivots[1], f"a saga has one pivot; also marked: {pivots[0]}")
        )
    pivot = _pivot_index(elements)
    final = next((e for e in elements if isinstance(e, SagaStep) and e.final), None)
    if final is not None:
        for element in elements[elements.index(final) + 1 :]:
            problems.append(
                Problem(
                    "error",
                    element.name,
                    f"unreachable: the saga completes at its final pivot {final.name}",
                )
            )
    for index, element in enumerate(elements):
        if isinstance(element, WaitFor) or element.deadline is None:
            continue
        if element.timeout is not None and element.deadline <= element.timeout:
            problems.append(
                Problem(
                    "error",
                    element.name,
                    f"deadline {element.deadline:g}s is not longer than the step's "
                    f"timeout {element.timeout:g}s",
                )
            )
        if pivot is not None and index >= pivot:
            problems.append(
                Problem("warning", element.name, "a deadline only applies before the pivot")
            )
        if element.on_expiry == "reacquire":
            problems.extend(_reacquire_problems(element))
    end = pivot if pivot is not None else len(elements)
    for element in elements[:end]:
        if isinstance(element, WaitFor):
            continue
        for item in element.branches if isinstance(element, ParallelGroup) else (element,):
            if item.compensate is None and not item.readonly:
                problems.append(
                    Problem(
                        "warning",
                        _where(element, item),
                        "side-effecting step before the pivot has no compensation "
                        "(mark it readonly=True if it changes nothing)",
                    )
                )
    return problems


def _reacquire_problems(element: SagaStep | ParallelGroup) -> list[Problem]:
    """Re-acquiring releases the expired hold first: that needs its compensation."""
    items = element.branches if isinstance(element, ParallelGroup) else (element,)
    return [
        Problem(
            "error",
            _where(element, item),
            "on_expiry='reacquire' needs a compensation to release the expired hold",
        )
        for item in items
        if item.compensate is None and (item is element or not item.readonly)
    ]


def _where(element: Element, item: SagaStep) -> str:
    return f"{element.name}/{item.name}" if item is not element else item.name


def saga_mermaid(elements: Sequence[Element]) -> str:
    """A Mermaid flowchart: steps in order, groups as subgraphs, compensations dashed, the
    pivot marked, holds with their deadline, re-acquisition as a loop."""
    lines = ["flowchart TD", "  start((start))"]
    previous = "start"
    for element in elements:
        node = _node_id(element.name)
        if isinstance(element, ParallelGroup):
            lines.append(
                f'  subgraph {node}["{element.name} (join: {element.join.label})'
                f'{_hold_label(element)}"]'
            )
            for item in element.branches:
                lines.append(f'    {node}_{_node_id(item.name)}["{item.name}"]')
            lines.append("  end")
            for item in element.branches:
                if item.compensate is not None:
                    undo = f"{node}_{_node_id(item.name)}_undo"
                    lines.append(f'  {undo}(["undo {item.name}"])')
                    lines.append(f"  {node}_{_node_id(item.name)} -.-> {undo}")
        elif isinstance(element, WaitFor):
            wait = f" ≤ {element.timeout:g}s" if element.timeout else ""
            lines.append(f'  {node}[/"wait {element.event}{wait}"/]')
        else:
            label = element.name
            if element.pivot:
                label += " ⟂ final pivot" if element.final else " ⟂ pivot"
            label += _hold_label(element)
            shape = f'{{{{"{label}"}}}}' if element.pivot else f'["{label}"]'
            lines.append(f"  {node}{shape}")
            if element.compensate is not None:
                lines.append(f'  {node}_undo(["undo {element.name}"])')
                lines.append(f"  {node} -.-> {node}_undo")
        if not isinstance(element, WaitFor) and element.on_expiry == "reacquire":
            lines.append(
                f'  {node} -. "expired: release, re-acquire ≤{element.max_reacquires}" .-> {node}'
            )
        lines.append(f"  {previous} --> {node}")
        previous = node
    lines.append("  done((done))")
    lines.append(f"  {previous} --> done")
    return "\n".join(lines) + "\n"


def _hold_label(element: SagaStep | ParallelGroup) -> str:
    if element.deadline is None:
        return ""
    renew = f" ↻ {element.max_reacquires}" if element.on_expiry == "reacquire" else ""
    return f" ⏳ {element.deadline:g}s{renew}"


def _node_id(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
