"""The event bus: publish typed events, relay the outbox, run consumer groups.

One explicit object per store, no global state::

    bus = EventBus(store, booking)                 # a Choreography or a list of groups
    engine = Engine(store, bus.registry)           # the groups' mailbox flows
    await bus.publish(TripRequested(trip_id="T-1"), subject="T-1")
    async with bus.running(engine):                # a worker and the relay
        ...

With ``transport=None`` (the default, ``--broker store://``) events go from the outbox
straight into the groups' inboxes, in the store. With a broker transport the relay
publishes to it and each group consumes its topics into its inbox (:class:`InboxAcceptor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Sequence

from tripwright.bus.base import Subscription, Transport
from tripwright.bus.envelope import schema_uri
from tripwright.bus.event import Event
from tripwright.bus.inbox import InboxAcceptor
from tripwright.bus.relay import OutboxRelay, TransportRelay
from tripwright.bus.store import StoreRelay
from tripwright.engine import codec
from tripwright.engine.clock import Clock, RealClock
from tripwright.engine.config import EngineConfig
from tripwright.engine.engine import Engine
from tripwright.engine.records import OutboxMessage
from tripwright.engine.registry import FlowRegistry
from tripwright.engine.store.base import Store
from tripwright.engine.worker import Worker
from tripwright.flows.events.choreography import Choreography
from tripwright.flows.events.dead_letters import DeadLetters
from tripwright.flows.events.group import ConsumerGroup

__all__ = ["EventBus"]


class EventBus:
    """Publishing, relaying and consuming for one store and one set of consumer groups."""

    def __init__(
        self,
        store: Store,
        groups: Choreography | Sequence[ConsumerGroup],
        *,
        transport: Transport | None = None,
        clock: Clock | None = None,
        relay_batch: int = 500,
        owner: str | None = None,
        source: str = "/tripwright/api",
    ) -> None:
        self.store = store
        self.choreography = (
            groups if isinstance(groups, Choreography) else Choreography("events", list(groups))
        )
        self.transport = transport
        self.clock = clock or RealClock()
        self.source = source
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.registry = FlowRegistry(self.choreography.flows())
        self.dead_letters = DeadLetters(store, clock=self.clock)
        self._workers: list[Worker] = []
        self.relay: OutboxRelay
        if transport is None:
            self.relay = StoreRelay(
                store,
                self.choreography.route,
                clock=self.clock,
                batch=relay_batch,
                on_relayed=self._wake_workers,
            )
        else:
            self.relay = TransportRelay(
                store, transport, owner=self.owner, clock=self.clock, batch=relay_batch
            )

    # -- publishing -----------------------------------------------------------------------
    async def publish(
        self,
        event: Event,
        *,
        subject: str | None = None,
        id: str | None = None,
        correlation_id: str | None = None,
        traceparent: str | None = None,
    ) -> str:
        """Commit ``event`` to the outbox (outside any run); returns its id. Publishing
        the same ``id`` twice keeps the first."""
        [event_id] = await self.publish_many(
            [event],
            subject=subject,
            ids=[id] if id else None,
            correlation_id=correlation_id,
            traceparent=traceparent,
        )
        return event_id

    async def publish_many(
        self,
        events: Sequence[Event],
        *,
        subject: str | None = None,
        subjects: Sequence[str | None] | None = None,
        ids: Sequence[str] | None = None,
        correlation_id: str | None = None,
        traceparent: str | None = None,
    ) -> list[str]:
        """Commit events to the outbox in one transaction, in order."""
        messages = []
        for index, event in enumerate(events):
            # Validates what will become the envelope now, not at relay time.
            envelope = event.envelope(
                source=self.source,
                subject=subjects[index] if subjects is not None else subject,
                id=ids[index] if ids is not None else None,
                traceparent=traceparent,
                correlationid=correlation_id,
            )
            headers: dict[str, str] = {
                "source": self.source,
                "dataschema": schema_uri(event.type_name, event.version),
            }
            if envelope.traceparent:
                headers["traceparent"] = envelope.traceparent
            if envelope.correlationid:
                headers["correlationid"] = envelope.correlationid
            messages.append(
                OutboxMessage(
                    event_id=envelope.id,
                    topic=event.topic,
                    type=event.type_name,
                    subject=envelope.subject,
                    data=codec.dumps(envelope.data, what="event data"),
                    headers=headers,
                )
            )
        await self.store.append_outbox(messages, self.clock.now())
        self.relay.notify()
        return [m.event_id for m in messages]

    # -- running --------------------------------------------------------------------------
    async def relay_once(self) -> int:
        """Relay one batch of the outbox (tests and simulations drive the bus with it)."""
        return await self.relay.relay_once()

    def attach(self, worker: Worker) -> None:
        """Wake ``worker`` when events reach the inboxes."""
        self._workers.append(worker)

    async def connect(self) -> None:
        """Connect the transport (nothing to do for the store): a worker calls it first, so
        that a broker it cannot reach, or that refuses its credentials, stops it before it
        starts (:class:`~tripwright.errors.TransportError`)."""
        if self.transport is not None:
            await self.transport.connect()

    async def run(self, stop: asyncio.Event) -> None:
        """Relay (and, with a broker, consume every group) until ``stop`` is set.

        Each group's subscription hands the messages its broker dead-lettered to the
        dead-letter store (:meth:`InboxAcceptor.dead_lettered`). On the way out the
        subscriptions drain the handler call in flight before the transport closes."""
        subscriptions: list[Subscription] = []
        await self.connect()
        try:
            if self.transport is not None:
                for group in self.choreography.groups:
                    acceptor = InboxAcceptor(
                        self.store,
                        group.name,
                        group.delivery,
                        clock=self.clock,
                        on_accepted=self._wake_workers,
                    )
                    subscriptions.append(
                        await self.transport.subscribe(
                            group.name,
                            group.topics,
                            acceptor,
                            on_dead_letter=acceptor.dead_lettered,
                        )
                    )
            await self.relay.run(stop)
        finally:
            for subscription in subscriptions:
                await subscription.close()
            if self.transport is not None:
                await self.transport.close()

    @contextlib.asynccontextmanager
    async def running(
        self, engine: Engine, *, worker_id: str | None = None, config: EngineConfig | None = None
    ) -> AsyncIterator[Worker]:
        """Run a worker of ``engine`` and this bus's relay until the block exits."""
        stop = asyncio.Event()
        worker = engine.worker(worker_id=worker_id, config=config)
        self.attach(worker)
        tasks = [
            asyncio.create_task(worker.run(stop), name="events worker"),
            asyncio.create_task(self.run(stop), name="events relay"),
        ]
        try:
            yield worker
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    def _wake_workers(self, moved: int) -> None:
        for worker in self._workers:
            worker.notify()

    # -- maintenance ----------------------------------------------------------------------
    async def prune(self, older_than: float, *, limit: int = 10_000) -> int:
        """Forget handled events (inbox dedupe rows) queued more than ``older_than``
        seconds ago; returns how many. Keep ``older_than`` well past the longest time a
        duplicate can still arrive (a broker's redelivery horizon, an outbox relay that
        was down): a duplicate older than its pruned inbox row would apply again."""
        return await self.store.prune_events(self.clock.now() - older_than, limit=limit)
