"""Poison on a real broker ends in Tripwright's dead-letter store, and redrive delivers it.

The event bus runs in the test process over RabbitMQ or NATS JetStream: a handler that
keeps failing dead-letters its event after the group's attempts; a message whose
consumers keep dying is dead-lettered by the broker after ``max_deliver`` deliveries; a
body that is no envelope is dead-lettered with its raw body. All three are listed by
``tripwright dlq list`` and redriven with ``tripwright dlq redrive``; a redriven event is
applied once, even when its broker copy arrives again.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tests.brokers import Backend
from tests.e2e.test_cli import run_cli
from tests.helpers import assert_eventually
from tripwright.bus import Delivery, Disposition, Event, OutgoingMessage
from tripwright.engine import Engine, EngineConfig, RetryPolicy
from tripwright.engine.records import DeadLetterRecord
from tripwright.engine.store import Store, create_store
from tripwright.flows.events import Choreography, ConsumerGroup, EventBus, HandlerContext

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GROUP = "ledger"


class Booked(Event):
    type_name = "booked.item"
    trip_id: str
    n: int


class Ledger:
    """A group whose handler fails for the ids in ``broken``; it records what it applied."""

    def __init__(self) -> None:
        self.broken: set[str] = set()
        self.group = ConsumerGroup(
            GROUP, retry=RetryPolicy(max_attempts=3, initial_interval=0.05, jitter=False)
        )
        self.group.add_handler("book", self._book, [Booked])

    async def _book(self, event: Booked, ctx: HandlerContext) -> None:
        if ctx.event_id in self.broken:
            raise RuntimeError(f"the provider refuses {ctx.event_id}")
        ctx.state.setdefault("applied", []).append(ctx.event_id)

    async def applied(self, store: Store, subject: str) -> list[str]:
        run = await store.get_run(self.group.mailbox(subject))
        return list(run.context.get("applied", []))


def _message(subject: str, n: int) -> OutgoingMessage:
    event = Booked(trip_id=subject, n=n)
    return OutgoingMessage(
        Booked.topic, event.envelope(source="/test", subject=subject, id=f"{subject}-{n}")
    )


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[Store]:
    opened = create_store(sqlite_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def _bus(store: Store, ledger: Ledger, broker: Backend) -> tuple[EventBus, Engine]:
    broker.groups.add(GROUP)
    broker.topics.add(Booked.topic)
    bus = EventBus(
        store,
        Choreography("ledgers", [ledger.group], external=(Booked,)),
        transport=broker.make(),
    )
    return bus, Engine(store, bus.registry, config=EngineConfig(poll_interval=0.01))


async def _letters(store: Store, count: int) -> list[DeadLetterRecord]:
    async def enough() -> bool:
        return len(await store.list_dead_letters()) >= count

    await assert_eventually(enough, timeout=30, interval=0.05)
    return await store.list_dead_letters()


async def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``tripwright ARGS`` in a process of its own, the bus running meanwhile."""
    return await asyncio.to_thread(run_cli, *args, cwd=ROOT)


async def test_a_failing_handler_dead_letters_and_redrive_applies_it_once(
    broker: Backend, store: Store, sqlite_url: str
) -> None:
    """After the group's three attempts the event is a dead letter and its subject goes
    on; once the handler is fixed, `dlq redrive` applies it once, and a later broker copy
    of it is absorbed by the inbox."""
    ledger = Ledger()
    ledger.broken.add("T1-1")
    bus, engine = _bus(store, ledger, broker)
    producer = broker.make()
    await producer.connect()
    try:
        async with bus.running(engine):
            # Through the outbox: the relay starts once the group is subscribed.
            events = [Booked(trip_id="T1", n=n) for n in range(3)]
            await bus.publish_many(events, subject="T1", ids=[f"T1-{n}" for n in range(3)])
            [letter] = await _letters(store, 1)
            assert (letter.kind, letter.event_id, letter.attempts) == ("handler_failed", "T1-1", 3)

            async def went_on() -> bool:
                return await ledger.applied(store, "T1") == ["T1-0", "T1-2"]

            await assert_eventually(went_on, timeout=20)
            ledger.broken.clear()
            done = await _cli("dlq", "redrive", str(letter.id), "--db", sqlite_url)
            assert done.returncode == 0, done.stderr

            async def redriven() -> bool:
                return "T1-1" in await ledger.applied(store, "T1")

            await assert_eventually(redriven, timeout=20)
            # A late broker copy of the redriven event, then a new one.
            await producer.publish([_message("T1", 1), _message("T1", 3)])

            async def later() -> bool:
                return "T1-3" in await ledger.applied(store, "T1")

            await assert_eventually(later, timeout=20)
        assert await ledger.applied(store, "T1") == ["T1-0", "T1-2", "T1-1", "T1-3"]
        assert await store.list_dead_letters() == []
    finally:
        await producer.close()


async def test_broker_dead_letters_and_raw_poison_share_the_dead_letter_store(
    broker: Backend, store: Store, sqlite_url: str
) -> None:
    """A message whose consumers died ``max_deliver`` times, and a body that is no
    envelope, reach the dead-letter store (envelope, resp. raw body, kept); `dlq redrive`
    applies the first once, refuses the raw one clearly, and `dlq drop` removes it."""
    broker.groups.add(GROUP)
    broker.topics.add(Booked.topic)
    for death in range(broker.options.max_deliver):
        stuck = asyncio.Event()

        async def hang(
            batch: Sequence[Delivery], stuck: asyncio.Event = stuck
        ) -> Sequence[Disposition]:
            stuck.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        consumer = broker.make()
        await consumer.connect()
        await consumer.subscribe(GROUP, [Booked.topic], hang)
        if death == 0:
            await consumer.publish([_message("Z", 0)])
        await asyncio.wait_for(stuck.wait(), 30)
        await broker.abandon(consumer)
    ledger = Ledger()
    bus, engine = _bus(store, ledger, broker)
    producer = broker.make()
    await producer.connect()
    async with bus.running(engine):
        await broker.put_raw(producer, GROUP, Booked.topic, b"\x00not an envelope")
        letters = await _letters(store, 2)
        done = await _cli("dlq", "list", "--json", "--db", sqlite_url)
        assert done.returncode == 0, done.stderr
        listed = {row["kind"]: row for row in map(json.loads, done.stdout.splitlines())}
        assert {"undeliverable", "malformed"} == set(listed)
        undeliverable, malformed = listed["undeliverable"], listed["malformed"]
        assert (undeliverable["event_id"], undeliverable["envelope"]["data"]) == (
            "Z-0",
            {"trip_id": "Z", "n": 0},
        )
        assert malformed["raw"] == "\\x00not an envelope"
        assert sorted(letter.id for letter in letters) == sorted(
            [undeliverable["id"], malformed["id"]]
        )

        done = await _cli("dlq", "redrive", str(undeliverable["id"]), "--db", sqlite_url)
        assert done.returncode == 0, done.stderr

        async def applied() -> bool:
            return await ledger.applied(store, "Z") == ["Z-0"]

        await assert_eventually(applied, timeout=20)
        done = await _cli("dlq", "redrive", str(malformed["id"]), "--db", sqlite_url)
        assert done.returncode == 1, done.stderr
        assert "no valid envelope to redrive" in done.stderr
        done = await _cli("dlq", "drop", str(malformed["id"]), "--db", sqlite_url)
        assert done.returncode == 0, done.stderr
    assert await ledger.applied(store, "Z") == ["Z-0"]
    assert await store.list_dead_letters() == []
