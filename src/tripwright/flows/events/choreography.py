"""A choreography: consumer groups and the events between them, as one definition.

::

    booking = Choreography(
        "booking",
        groups=[billing, ticketing, notifications],
        external=(TripRequested,),     # published from outside (the API, a saga)
    )

It routes events to the groups that consume them, and it is what ``tripwright flows
validate`` checks (subscriptions nobody publishes to, events nobody consumes, cycles with
no end) and ``tripwright flows diagram`` draws (producer -> event type -> consumer group).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from tripwright.bus.event import Event
from tripwright.bus.relay import outbox_envelope_dict
from tripwright.engine.flow import Flow
from tripwright.engine.records import InboxDelivery, OutboxRecord
from tripwright.errors import DefinitionError
from tripwright.flows.events.group import ConsumerGroup

__all__ = ["Choreography", "Finding"]


@dataclass(frozen=True, slots=True)
class Finding:
    """A validation finding: an ``error`` (the definition cannot work) or a ``warning``."""

    severity: Literal["error", "warning"]
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


class Choreography:
    """Consumer groups wired by the events they consume and publish."""

    def __init__(
        self,
        name: str,
        groups: Sequence[ConsumerGroup],
        *,
        external: Iterable[type[Event]] = (),
        description: str = "",
    ) -> None:
        Flow(name)  # the same naming rules as flows
        self.name = name
        self.description = description
        self.groups = list(groups)
        names = [g.name for g in self.groups]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DefinitionError(f"choreography {name!r} has groups twice: {duplicates}")
        self.external = tuple(external)
        self.version = "1"

    # -- routing ------------------------------------------------------------------------
    def flows(self) -> list[Flow]:
        """The engine flows of the groups' mailbox runs."""
        return [g.to_flow() for g in self.groups]

    def route(self, record: OutboxRecord) -> list[InboxDelivery]:
        """The mailbox deliveries of one outbox row: one per group consuming its type."""
        envelope = outbox_envelope_dict(record)
        deliveries = []
        for group in self.groups:
            delivery = group.delivery(envelope, record.topic)
            if delivery is not None:
                deliveries.append(delivery)
        return deliveries

    def group(self, name: str) -> ConsumerGroup:
        for group in self.groups:
            if group.name == name:
                return group
        raise DefinitionError(f"no consumer group {name!r} in choreography {self.name!r}")

    # -- the graph ------------------------------------------------------------------------
    def event_types(self) -> dict[str, type[Event]]:
        """Every event type mentioned (consumed, published or external), by type name."""
        found: dict[str, type[Event]] = {}
        for kind in self.external:
            found[kind.type_name] = kind
        for group in self.groups:
            for spec in group.handlers:
                for kind in (*spec.consumes, *spec.publishes):
                    found[kind.type_name] = kind
        return found

    def edges(self) -> list[tuple[str, str]]:
        """Type -> type edges: a handler of the first may publish the second."""
        out = []
        for group in self.groups:
            for spec in group.handlers:
                for consumed in spec.consumes:
                    for published in spec.publishes:
                        out.append((consumed.type_name, published.type_name))
        return sorted(set(out))

    def validate(self) -> list[Finding]:
        """Subscriptions nobody publishes to, events nobody consumes, cycles with no end,
        and two classes claiming one type name."""
        findings: list[Finding] = []
        published: set[str] = {k.type_name for k in self.external}
        consumed: dict[str, list[str]] = {}
        classes: dict[str, set[type[Event]]] = {}
        for kind in self.external:
            classes.setdefault(kind.type_name, set()).add(kind)
        for group in self.groups:
            for spec in group.handlers:
                for kind in spec.publishes:
                    published.add(kind.type_name)
                    classes.setdefault(kind.type_name, set()).add(kind)
                for kind in spec.consumes:
                    consumed.setdefault(kind.type_name, []).append(f"{group.name}.{spec.name}")
                    classes.setdefault(kind.type_name, set()).add(kind)
        for type_name, kinds in sorted(classes.items()):
            if len(kinds) > 1:
                findings.append(
                    Finding(
                        "error",
                        self.name,
                        f"event type {type_name!r} is defined by several classes: "
                        + ", ".join(sorted(k.__qualname__ for k in kinds)),
                    )
                )
        for type_name, handlers in sorted(consumed.items()):
            if type_name not in published:
                findings.append(
                    Finding(
                        "error",
                        ", ".join(handlers),
                        f"subscribes to {type_name!r}, which nobody publishes (declare it in "
                        "a handler's publishes= or in the choreography's external=)",
                    )
                )
        for type_name in sorted(published - set(consumed)):
            findings.append(
                Finding("warning", self.name, f"{type_name!r} is published but nobody consumes it")
            )
        findings.extend(self._cycles())
        return findings

    def _cycles(self) -> list[Finding]:
        """A cycle of types whose handlers can only publish back into it never ends."""
        graph: dict[str, set[str]] = {}
        for source, target in self.edges():
            graph.setdefault(source, set()).add(target)
            graph.setdefault(target, set())
        findings = []
        for component in _strongly_connected(graph):
            cyclic = len(component) > 1 or any(n in graph[n] for n in component)
            if not cyclic:
                continue
            exits = sorted({t for n in component for t in graph[n] if t not in component})
            loop = " -> ".join(sorted(component))
            if exits:
                findings.append(
                    Finding(
                        "warning",
                        self.name,
                        f"cycle {loop}: it ends only when a handler publishes "
                        f"{', '.join(exits)} (or nothing)",
                    )
                )
            else:
                findings.append(
                    Finding(
                        "error",
                        self.name,
                        f"cycle with no end: {loop} re-trigger each other and publish nothing else",
                    )
                )
        return findings

    def to_mermaid(self) -> str:
        """A flowchart: producers -> event types -> handlers (in their group)."""
        types = self.event_types()
        type_ids = {name: f"t{i}" for i, name in enumerate(sorted(types))}
        lines = ["flowchart LR"]
        if self.external:
            lines.append("  external((external))")
        for name, node in type_ids.items():
            lines.append(f'  {node}(["{name} v{types[name].version}"])')
        handler_ids: dict[tuple[str, str], str] = {}
        for gi, group in enumerate(self.groups):
            lines.append(f'  subgraph g{gi}["group {group.name}"]')
            for hi, spec in enumerate(group.handlers):
                node = f"g{gi}h{hi}"
                handler_ids[(group.name, spec.name)] = node
                lines.append(f'    {node}["{spec.name}"]')
            lines.append("  end")
        for kind in self.external:
            lines.append(f"  external --> {type_ids[kind.type_name]}")
        for group in self.groups:
            for spec in group.handlers:
                node = handler_ids[(group.name, spec.name)]
                for kind in spec.consumes:
                    lines.append(f"  {type_ids[kind.type_name]} --> {node}")
                for kind in spec.publishes:
                    lines.append(f"  {node} -. publishes .-> {type_ids[kind.type_name]}")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"Choreography({self.name!r}, groups={[g.name for g in self.groups]!r})"


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components (iterative enough for small graphs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            out.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out
