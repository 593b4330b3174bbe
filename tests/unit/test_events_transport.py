"""Events over a transport (the in-process one) on both stores: relay lease, inbox accept."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import FAST
from tests.helpers import assert_eventually
from tests.unit.test_events_model import TripConfirmed
from tripwright.bus import ACK, Delivery, MemoryTransport, Reject, Retry
from tripwright.bus.inbox import InboxAcceptor
from tripwright.bus.relay import TransportRelay
from tripwright.engine import Engine, EngineConfig, RealClock
from tripwright.engine.records import OutboxMessage
from tripwright.engine.store import Store
from tripwright.errors import StoreError
from tripwright.flows.events import Choreography, ConsumerGroup, EventBus, HandlerContext


def _group(seen: list[tuple[str, int]]) -> ConsumerGroup:
    group = ConsumerGroup("remote")

    @group.handler(TripConfirmed)
    async def record(event: TripConfirmed, ctx: HandlerContext) -> None:
        seen.append((event.trip_id, event.n))

    return group


async def test_events_cross_a_transport_once_each_in_order(store: Store) -> None:
    """Through a transport, with every message published twice, each event applies once,
    in subject order."""
    seen: list[tuple[str, int]] = []
    transport = MemoryTransport()
    real_publish = transport.publish

    async def twice(messages):  # type: ignore[no-untyped-def]
        await real_publish(messages)
        await real_publish(messages)

    transport.publish = twice  # type: ignore[method-assign]
    group = _group(seen)
    bus = EventBus(
        store, Choreography("c", [group], external=(TripConfirmed,)), transport=transport
    )
    engine = Engine(store, bus.registry, config=EngineConfig(poll_interval=0.01))
    for n in range(6):
        for trip in ("T1", "T2"):
            await bus.publish(TripConfirmed(trip_id=trip, n=n), subject=trip)
    async with bus.running(engine):
        await assert_eventually(lambda: _count(seen, 12))
        await asyncio.sleep(0.05)
    for trip in ("T1", "T2"):
        assert [(trip, n) for n in range(6)] == [s for s in seen if s[0] == trip]
    assert len(seen) == 12
    assert await store.outbox_count(published=False) == 0


async def _count(seen: list[tuple[str, int]], n: int) -> bool:
    return len(seen) >= n


async def test_one_relay_holds_the_lease_and_a_stale_one_cannot_mark(store: Store) -> None:
    """Two relays take turns by lease; a relay whose lease was taken over marks nothing."""
    clock = RealClock()
    await store.append_outbox(
        [OutboxMessage(f"e{i}", "trip", "trip.confirmed", "T", "{}", {}) for i in range(3)],
        clock.now(),
    )
    first = await store.claim_outbox("outbox", "a", clock.now(), 0.2, 10)
    assert first is not None
    assert len(first[1]) == 3
    assert None is await store.claim_outbox("outbox", "b", clock.now(), 0.2, 10)
    await asyncio.sleep(0.25)
    second = await store.claim_outbox("outbox", "b", clock.now(), 5.0, 10)
    assert second is not None
    assert second[0] == first[0] + 1
    assert False is await store.mark_published("outbox", "a", first[0], [first[1][0].id], 0.0)
    assert True is await store.mark_published(
        "outbox", "b", second[0], [r.id for r in second[1]], 0.0
    )
    assert await store.outbox_count(published=False) == 0


async def test_transport_relay_publishes_then_marks(store: Store) -> None:
    """The transport relay publishes a batch with confirmation, then marks it published."""
    transport = MemoryTransport()
    await transport.connect()
    relay = TransportRelay(store, transport, owner="w1")
    await store.append_outbox(
        [OutboxMessage(f"e{i}", "trip", "trip.confirmed", "T", "{}", {}) for i in range(4)],
        RealClock().now(),
    )
    assert await relay.relay_once() == 4
    assert transport.published == 4
    assert await relay.relay_once() == 0
    assert await store.outbox_count(published=False) == 0


async def test_a_relay_that_stops_cleanly_hands_its_lease_over(store: Store) -> None:
    """A relay stopped cleanly gives its lease back: another relay takes the turn at once,
    not after the lease's time-to-live; a relay that holds nothing releases nothing."""
    transport = MemoryTransport()
    await transport.connect()
    clock = RealClock()
    first = TransportRelay(store, transport, owner="w1", lease_ttl=60.0)
    second = TransportRelay(store, transport, owner="w2", lease_ttl=60.0)
    await store.append_outbox(
        [OutboxMessage("e1", "trip", "trip.confirmed", "T", "{}", {})], clock.now()
    )
    stop = asyncio.Event()
    running = asyncio.create_task(first.run(stop))
    await assert_eventually(lambda: _published(store))
    await second.release()  # it never held the lease: w1 keeps it
    assert None is await store.claim_outbox("outbox", "w2", clock.now(), 60.0, 10)
    stop.set()
    await running
    await store.append_outbox(
        [OutboxMessage("e2", "trip", "trip.confirmed", "T", "{}", {})], clock.now()
    )
    assert await second.relay_once() == 1
    assert transport.published == 2


async def _published(store: Store) -> bool:
    return await store.outbox_count(published=False) == 0


async def test_broker_dead_letters_go_to_the_dead_letter_store(store: Store) -> None:
    """A message the broker gave up on is a dead letter with its envelope (kind
    undeliverable), or raw (malformed); a type the group does not consume is dropped."""
    group = _group([])
    acceptor = InboxAcceptor(store, group.name, group.delivery)
    good = TripConfirmed(trip_id="T1", n=1).envelope(source="/t", subject="T1", id="ok-1")
    other = good.to_dict() | {"id": "other-1", "type": "trip.other"}
    reason = "dead-lettered by the broker"
    await acceptor.dead_lettered(Delivery("trip", good.to_bytes(), attempt=3), reason)
    await acceptor.dead_lettered(Delivery("trip", json.dumps(other).encode()), reason)
    await acceptor.dead_lettered(Delivery("trip", b"\xffnot json", {"ce-id": "p-1"}), reason)
    letters = {letter.kind: letter for letter in await store.list_dead_letters()}
    assert {"undeliverable", "malformed"} == set(letters)
    undeliverable, malformed = letters["undeliverable"], letters["malformed"]
    assert (undeliverable.event_id, undeliverable.attempts, undeliverable.reason) == (
        "ok-1",
        3,
        reason,
    )
    assert undeliverable.envelope == good.to_dict()
    assert (malformed.event_id, malformed.raw) == ("p-1", "\\xffnot json")
    assert malformed.reason.startswith(reason)

    class Down:
        async def add_dead_letter(self, *args: object) -> int:
            raise StoreError("database unreachable")

    outage = InboxAcceptor(Down(), group.name, group.delivery)  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        await outage.dead_lettered(Delivery("trip", good.to_bytes()), reason)


async def test_malformed_message_is_rejected_into_the_dead_letter_store(store: Store) -> None:
    """A body that is not an envelope is dead-lettered raw and rejected; valid ones in the
    same batch are accepted; a store outage asks for a retry instead."""
    seen: list[tuple[str, int]] = []
    group = _group(seen)
    acceptor = InboxAcceptor(store, group.name, group.delivery)
    good = TripConfirmed(trip_id="T1", n=1).envelope(source="/t", subject="T1", id="ok-1")
    batch = [
        Delivery("trip", b"\x00{not json", {"ce-id": "poison-1"}, attempt=2),
        Delivery("trip", good.to_bytes()),
    ]
    answers = await acceptor(batch)
    assert isinstance(answers[0], Reject)
    assert answers[1] == ACK
    [letter] = await store.list_dead_letters()
    assert (letter.event_id, letter.kind, letter.attempts) == ("poison-1", "malformed", 2)
    assert letter.raw is not None
    assert letter.raw.endswith("{not json")
    again = group.delivery(good.to_dict(), "trip")
    assert again is not None
    assert await store.deliver([again], 0.0) == [False]

    class Down:
        async def deliver(self, *args: object) -> list[bool]:
            raise StoreError("database unreachable")

    outage = InboxAcceptor(Down(), group.name, group.delivery)  # type: ignore[arg-type]
    [answer] = await outage([Delivery("trip", good.to_bytes())])
    assert isinstance(answer, Retry)


async def test_worker_config_is_reused(store: Store) -> None:
    """The bus runs a worker with the engine's configuration."""
    bus = EventBus(store, [_group([])])
    engine = Engine(store, bus.registry, config=FAST)
    async with bus.running(engine) as worker:
        assert worker.config == FAST
