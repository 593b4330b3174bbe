"""Mermaid diagrams of engine flows (models draw their own: see ``Saga.to_mermaid``)."""

from __future__ import annotations

from tripwright.engine.flow import Flow

__all__ = ["flow_mermaid"]


def flow_mermaid(flow: Flow) -> str:
    """A flowchart of a flow's steps in declaration order; failure handlers dashed.

    Steps that route with ``Goto`` decide at run time, so only the declared order and the
    ``on_failure`` handlers are drawn.
    """
    lines = ["flowchart TD", "  start((start))"]
    ids = {spec.name: f"s{index}" for index, spec in enumerate(flow.steps)}
    for spec in flow.steps:
        timeout = f" ⏱ {spec.timeout:g}s" if spec.timeout else ""
        lines.append(f'  {ids[spec.name]}["{spec.name}{timeout}"]')
    lines.append(f"  start --> {ids[flow.start_step]}")
    for spec in flow.steps:
        following = flow.next_after(spec.name)
        if following is not None:
            lines.append(f"  {ids[spec.name]} --> {ids[following]}")
        if spec.on_failure is not None:
            lines.append(f"  {ids[spec.name]} -. failure .-> {ids[spec.on_failure]}")
    return "\n".join(lines) + "\n"
