"""The hybrid model: one definition wiring a statechart, the sagas it invokes and the
consumer groups that react to the events it publishes.

::

    trip = Hybrid(
        lifecycle,                        # the statechart (invokes sagas, publishes events)
        sagas=[book_providers],           # <invoke type="saga" src="book_providers">
        groups=[notifier],                # consumer groups of the events it publishes
        publishes=[TripConfirmed],        # the event classes its sends may publish
    )
    trip.register(engine)                 # the chart, the sagas and the groups' flows
    bus = trip.event_bus(store)           # relays the chart's events to the groups

The chart runs as a :class:`~.flow.HybridFlow`: a statechart flow whose ``saga``
invokes are served by :class:`~.invoker.SagaInvoker`, whose ``event`` sends by
:class:`~.publishing.TypedEvents`, and whose cancel cancels its sagas. ``validate``
checks the parts and the wiring; ``to_mermaid`` draws them together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tripwright.bus.event import Event
from tripwright.engine.engine import Engine
from tripwright.engine.flow import Flow
from tripwright.engine.registry import FlowRegistry
from tripwright.engine.store.base import Store
from tripwright.errors import DefinitionError
from tripwright.flows.events import Choreography, ConsumerGroup, EventBus
from tripwright.flows.hybrid.flow import HybridFlow
from tripwright.flows.problems import Problem
from tripwright.flows.saga import Saga
from tripwright.flows.statechart.model import Statechart

__all__ = ["Hybrid"]


class Hybrid:
    """A statechart with the sagas it invokes and the consumer groups of its events.

    ``publishes`` are the event classes the chart's ``event`` sends may publish;
    ``external`` those of them (or others) consumed outside this definition, which need
    no subscriber here. ``name`` defaults to the chart's (the machine's flow name).
    """

    def __init__(
        self,
        chart: Statechart,
        *,
        sagas: Sequence[Saga] = (),
        groups: Sequence[ConsumerGroup] = (),
        publishes: Iterable[type[Event]] = (),
        external: Iterable[type[Event]] = (),
        name: str | None = None,
        description: str = "",
    ) -> None:
        self.name = name or chart.name
        Flow(self.name)  # the same naming rules as flows
        self.chart = chart
        self.sagas = list(sagas)
        self.groups = list(groups)
        self.publishes = tuple(publishes)
        self.external = tuple(external)
        self.description = description
        for what, names in (
            ("sagas", [s.name for s in self.sagas]),
            ("groups", [g.name for g in self.groups]),
        ):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise DefinitionError(f"hybrid {self.name!r} lists {what} twice: {twice}")
        for kind in (*self.publishes, *self.external):
            if not (isinstance(kind, type) and issubclass(kind, Event) and kind.type_name):
                raise DefinitionError(
                    f"hybrid {self.name!r}: {kind!r} is not a typed Event with a type_name"
                )
        self._flow: HybridFlow | None = None

    @property
    def version(self) -> str:
        """The chart's version (the hybrid's parts are versioned on their own)."""
        return str(self.chart.version)

    # -- the parts on the engine ----------------------------------------------------------
    @property
    def flow(self) -> HybridFlow:
        """The machine's engine flow (built once)."""
        if self._flow is None:
            self._flow = HybridFlow(
                self.chart,
                sagas=self.sagas,
                publishes=self.publishes,
                description=self.description,
            )
        return self._flow

    def flows(self) -> list[Flow]:
        """Every engine flow: the machine's, each saga's, each group's mailbox flow."""
        return [self.flow, *(s.to_flow() for s in self.sagas), *(g.to_flow() for g in self.groups)]

    def choreography(self) -> Choreography:
        """The consumer groups, with the chart's events as their external input."""
        return Choreography(
            self.name,
            self.groups,
            external=tuple(dict.fromkeys((*self.publishes, *self.external))),
            description=self.description,
        )

    def register(self, target: Engine | FlowRegistry) -> FlowRegistry:
        """Register every flow of the hybrid with an engine (or a registry), in one call."""
        registry = target.registry if isinstance(target, Engine) else target
        for flow in self.flows():
            registry.register(flow)
        return registry

    def event_bus(self, store: Store, **options: Any) -> EventBus:
        """An :class:`EventBus` relaying the chart's (and the groups') events to the
        groups; ``options`` as for :class:`EventBus` (``transport``, ``clock``, ...)."""
        return EventBus(store, self.choreography(), **options)

    # -- checks and diagram ---------------------------------------------------------------
    def validate(self) -> list[Problem]:
        """The parts' own problems and the wiring's, errors first."""
        from tripwright.flows.hybrid.checks import hybrid_problems

        return hybrid_problems(self)

    def to_mermaid(self) -> str:
        """One Mermaid flowchart: the chart's states, the sagas they invoke, the events
        they publish and the consumer groups that handle them."""
        from tripwright.flows.hybrid.diagram import hybrid_mermaid

        return hybrid_mermaid(self)

    def __repr__(self) -> str:
        return (
            f"Hybrid({self.name!r}, sagas={[s.name for s in self.sagas]!r}, "
            f"groups={[g.name for g in self.groups]!r})"
        )
