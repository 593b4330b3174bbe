"""The event-driven model on both stores: inboxes, order, retries, dead letters, upcasters."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import FAST
from tests.helpers import settle_events
from tripwright.bus import Event, schema_uri
from tripwright.engine import Engine, RetryPolicy, VirtualClock
from tripwright.engine.records import InboxDelivery, OutboxMessage
from tripwright.engine.store import Store
from tripwright.errors import DeadLetterNotFoundError, FinalError
from tripwright.flows.events import (
    Choreography,
    ConsumerGroup,
    EventBus,
    HandlerContext,
)

QUICK = RetryPolicy(max_attempts=3, initial_interval=0.5, jitter=False)


class TripConfirmed(Event):
    type_name = "trip.confirmed"
    trip_id: str
    n: int


class PaymentCaptured(Event):
    type_name = "payment.captured"
    trip_id: str
    n: int


class FareQuoted(Event):
    """Three versions: v1 {amount}, v2 {amount, currency}, v3 {total, currency}."""

    type_name = "fare.quoted"
    version = 3
    total: str
    currency: str


@FareQuoted.upcaster(1)
def _fare_v1(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "currency": "EUR"}


@FareQuoted.upcaster(2)
def _fare_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {"total": data["amount"], "currency": data["currency"]}


class Harness:
    """A bus, an engine and a worker on the test store, driven on a virtual clock."""

    def __init__(self, store: Store, clock: VirtualClock, choreography: Choreography) -> None:
        self.store = store
        self.clock = clock
        self.bus = EventBus(store, choreography, clock=clock)
        self.engine = Engine(store, self.bus.registry, clock=clock, config=FAST)
        self.worker = self.engine.worker()

    async def raw(self, event_id: str, type_name: str, data: Any, headers: dict[str, Any]) -> None:
        """Commit an outbox row as written, bypassing the typed API (subject ``s``)."""
        message = OutboxMessage(
            event_id=event_id,
            topic=type_name.split(".")[0],
            type=type_name,
            subject="s",
            data=json.dumps(data),
            headers=headers,
        )
        await self.store.append_outbox([message], self.clock.now())

    async def settle(self, rounds: int = 100) -> None:
        """Relay and handle until nothing is unpublished, due or retrying."""
        await settle_events(self.engine, self.bus, self.worker, self.clock, rounds=rounds)


@pytest.fixture
def harness(store: Store, clock: VirtualClock) -> Callable[..., Harness]:
    def build(*groups: ConsumerGroup, external: tuple[type[Event], ...] = ()) -> Harness:
        return Harness(store, clock, Choreography("test", list(groups), external=external))

    return build


def recording_group(name: str, seen: list[tuple[str, str, int]], **options: Any) -> ConsumerGroup:
    group = ConsumerGroup(name, retry=QUICK, **options)

    @group.handler(TripConfirmed)
    async def record(event: TripConfirmed, ctx: HandlerContext) -> None:
        seen.append((name, event.trip_id, event.n))

    return group


async def test_two_groups_each_apply_every_event_once_in_subject_order(
    harness: Callable[..., Harness],
) -> None:
    """Every group applies every event once, each subject's events in publish order."""
    seen: list[tuple[str, str, int]] = []
    h = harness(recording_group("a", seen), recording_group("b", seen), external=(TripConfirmed,))
    for n in range(5):
        for trip in ("T1", "T2", "T3"):
            await h.bus.publish(TripConfirmed(trip_id=trip, n=n), subject=trip)
    await h.settle()
    for group in ("a", "b"):
        for trip in ("T1", "T2", "T3"):
            expected = [(group, trip, n) for n in range(5)]
            assert expected == [s for s in seen if s[0] == group and s[1] == trip]
    assert len(seen) == 30


async def test_duplicate_deliveries_apply_once_per_group(
    harness: Callable[..., Harness],
) -> None:
    """The same event id delivered again (to the outbox or the inbox) is applied once."""
    seen: list[tuple[str, str, int]] = []
    group = recording_group("a", seen)
    h = harness(group, external=(TripConfirmed,))
    event = TripConfirmed(trip_id="T1", n=1)
    await h.bus.publish(event, subject="T1", id="e-1")
    await h.bus.publish(event, subject="T1", id="e-1")
    await h.settle()
    delivery = group.delivery(event.envelope(source="/t", subject="T1", id="e-1").to_dict(), "trip")
    assert isinstance(delivery, InboxDelivery)
    assert await h.store.deliver([delivery, delivery], h.clock.now()) == [False, False]
    await h.settle()
    assert seen == [("a", "T1", 1)]


async def test_handler_publishes_through_the_outbox_of_its_commit(
    harness: Callable[..., Harness],
) -> None:
    """Events a handler publishes reach the next group; a failing handler publishes none."""
    captured: list[tuple[str, int]] = []
    billing = ConsumerGroup("billing", retry=QUICK)

    @billing.handler(TripConfirmed, publishes=(PaymentCaptured,))
    async def capture(event: TripConfirmed, ctx: HandlerContext) -> None:
        ctx.publish(PaymentCaptured(trip_id=event.trip_id, n=event.n))
        ctx.state["captured"] = ctx.state.get("captured", 0) + 1
        if event.n == 2:
            raise FinalError("card declined")

    notify = ConsumerGroup("notify")

    @notify.handler(PaymentCaptured)
    async def tell(event: PaymentCaptured, ctx: HandlerContext) -> None:
        captured.append((event.trip_id, event.n))
        assert ctx.envelope.traceparent is not None

    h = harness(billing, notify, external=(TripConfirmed,))
    for n in range(4):
        await h.bus.publish(TripConfirmed(trip_id="T1", n=n), subject="T1")
    await h.settle()
    assert captured == [("T1", 0), ("T1", 1), ("T1", 3)]
    mailbox = await h.store.get_run(billing.mailbox("T1"))
    assert mailbox.context == {"captured": 3}
    assert await h.store.outbox_count() == 4 + 3
    [letter] = await h.bus.dead_letters.list()
    assert (
        letter.group,
        letter.handler,
        letter.kind,
        letter.attempts,
    ) == ("billing", "capture", "handler_failed", 1)
    assert letter.error == {"type": "FinalError", "message": "card declined"}


async def test_retries_then_dead_letter_then_the_mailbox_goes_on(
    harness: Callable[..., Harness],
) -> None:
    """A failing handler is retried with backoff, dead-lettered after the last attempt with
    its error, attempts and handler, and the subject's next event is handled after it."""
    attempts: list[int] = []
    seen: list[int] = []
    group = ConsumerGroup("flaky", retry=QUICK)

    @group.handler(TripConfirmed)
    async def handle(event: TripConfirmed, ctx: HandlerContext) -> None:
        if event.n == 0:
            attempts.append(ctx.attempt)
            raise RuntimeError("provider down")
        seen.append(event.n)

    h = harness(group, external=(TripConfirmed,))
    await h.bus.publish(TripConfirmed(trip_id="T1", n=0), subject="T1", id="e-0")
    await h.bus.publish(TripConfirmed(trip_id="T1", n=1), subject="T1", id="e-1")
    started = h.clock.now()
    await h.settle()
    assert attempts == [1, 2, 3]
    assert seen == [1]
    assert h.clock.now() - started >= 0.5 + 1.0  # the backoff between attempts
    [letter] = await h.bus.dead_letters.list(group="flaky")
    assert (
        letter.event_id,
        letter.handler,
        letter.attempts,
        letter.kind,
    ) == ("e-0", "handle", 3, "handler_failed")
    assert letter.error == {"type": "RuntimeError", "message": "provider down"}
    assert letter.envelope is not None
    assert letter.envelope["data"] == {"trip_id": "T1", "n": 0}
    assert letter.run_id == group.mailbox("T1")
    journal = await h.store.journal(group.mailbox("T1"))
    assert sum(e.kind == "dead_lettered" for e in journal) == 1


async def test_a_dead_lettered_event_leaves_the_subject_state_as_it_was(
    harness: Callable[..., Harness],
) -> None:
    """What a handler changed in the subject's state before it failed for good is not
    kept: the next event sees the state as the last handled event left it."""
    seen: list[dict[str, Any]] = []
    group = ConsumerGroup("tally", retry=RetryPolicy(max_attempts=1))

    @group.handler(TripConfirmed)
    async def handle(event: TripConfirmed, ctx: HandlerContext) -> None:
        seen.append(dict(ctx.state))
        ctx.state["last"] = event.n
        if event.n == 1:
            raise RuntimeError("rejected")

    h = harness(group, external=(TripConfirmed,))
    for n in range(3):
        await h.bus.publish(TripConfirmed(trip_id="T1", n=n), subject="T1", id=f"e-{n}")
    await h.settle()
    assert seen == [{}, {"last": 0}, {"last": 0}]
    [letter] = await h.bus.dead_letters.list(group="tally")
    assert letter.event_id == "e-1"
    assert (await h.engine.get(group.mailbox("T1"))).context == {"last": 2}


async def test_the_mailbox_journal_refers_to_each_event_by_id(
    harness: Callable[..., Harness],
) -> None:
    """A mailbox's journal names each event it received (id, topic, subject, schema); the
    envelope itself stays in the inbox, not in the journal."""
    seen: list[tuple[str, str, int]] = []
    group = recording_group("a", seen)
    h = harness(group, external=(TripConfirmed,))
    for n in range(2):
        await h.bus.publish(TripConfirmed(trip_id="T1", n=n), subject="T1", id=f"e-{n}")
    await h.settle()
    assert seen == [("a", "T1", 0), ("a", "T1", 1)]
    journal = await h.store.journal(group.mailbox("T1"))
    received = [e.data for e in journal if e.kind == "event_received"]
    schema = schema_uri("trip.confirmed", 1)
    assert [r["payload"] for r in received] == [
        {"topic": "trip", "id": f"e-{n}", "subject": "T1", "dataschema": schema} for n in range(2)
    ]
    assert all(r["event"] == "trip.confirmed" for r in received)


async def test_redrive_applies_the_event_once_and_drop_forgets_it(
    harness: Callable[..., Harness],
) -> None:
    """A redriven dead letter is handled once (same id, same key); drop removes one."""
    broken = {"e-0", "e-1"}
    handled: list[tuple[str, str]] = []
    group = ConsumerGroup("fixable", retry=RetryPolicy(max_attempts=1))

    @group.handler(TripConfirmed)
    async def handle(event: TripConfirmed, ctx: HandlerContext) -> None:
        if ctx.event_id in broken:
            raise RuntimeError("bug")
        handled.append((ctx.event_id, ctx.idempotency_key))

    h = harness(group, external=(TripConfirmed,))
    for n in range(2):
        await h.bus.publish(TripConfirmed(trip_id="T1", n=n), subject="T1", id=f"e-{n}")
    await h.settle()
    first, second = await h.bus.dead_letters.list()
    broken.clear()
    await h.bus.dead_letters.redrive(first.id)
    with pytest.raises(DeadLetterNotFoundError):
        await h.bus.dead_letters.redrive(first.id)
    dropped = await h.bus.dead_letters.drop(second.id)
    await h.settle()
    assert handled == [("e-0", "fixable:e-0")]
    assert dropped.event_id == "e-1"
    assert await h.bus.dead_letters.list() == []
    with pytest.raises(DeadLetterNotFoundError):
        await h.bus.dead_letters.get(second.id)


async def test_upcasters_lift_old_versions_and_unknown_versions_are_dead_lettered(
    harness: Callable[..., Harness],
) -> None:
    """v1 and v2 data reach the handler as v3; v4, and a version with no schema, do not."""
    seen: list[FareQuoted] = []
    group = ConsumerGroup("pricing")

    @group.handler(FareQuoted)
    async def quote(event: FareQuoted, ctx: HandlerContext) -> None:
        seen.append(event)

    h = harness(group, external=(FareQuoted,))
    raw = [
        ("v1", 1, {"amount": "10.00"}),
        ("v2", 2, {"amount": "20.00", "currency": "USD"}),
        ("v3", 3, {"total": "30.00", "currency": "GBP"}),
        ("v4", 4, {"total": "40.00", "currency": "GBP", "new": True}),
        ("nov", None, {"total": "50.00", "currency": "GBP"}),
    ]
    await h.store.append_outbox(
        [
            OutboxMessage(
                event_id=event_id,
                topic="fare",
                type="fare.quoted",
                subject="T1",
                data=json.dumps(data),
                headers={}
                if version is None
                else {"dataschema": f"urn:tripwright:schema:fare.quoted:v{version}"},
            )
            for event_id, version, data in raw
        ],
        h.clock.now(),
    )
    await h.settle()
    assert [
        FareQuoted(total="10.00", currency="EUR"),
        FareQuoted(total="20.00", currency="USD"),
        FareQuoted(total="30.00", currency="GBP"),
    ] == seen
    letters = {letter.event_id: letter for letter in await h.bus.dead_letters.list()}
    assert {"v4", "nov"} == set(letters)
    assert "newer than the v3" in letters["v4"].reason
    assert "no schema version" in letters["nov"].reason
    assert letters["v4"].kind == "schema"


async def test_missing_upcaster_path_is_dead_lettered(harness: Callable[..., Harness]) -> None:
    """A version with a gap in its upcaster chain is dead-lettered, naming the gap."""

    class Gapped(Event):
        type_name = "gapped.event"
        version = 3
        x: int

    @Gapped.upcaster(2)
    def _two(data: dict[str, Any]) -> dict[str, Any]:
        return data

    group = ConsumerGroup("gaps")

    @group.handler(Gapped)
    async def never(event: Gapped, ctx: HandlerContext) -> None:
        raise AssertionError("must not run")

    h = harness(group, external=(Gapped,))
    await h.raw("g-1", "gapped.event", {"x": 1}, {"dataschema": schema_uri("gapped.event", 1)})
    await h.settle()
    [letter] = await h.bus.dead_letters.list()
    assert "no upcaster from v1 to v2" in letter.reason


async def test_malformed_envelope_in_the_outbox_is_dead_lettered_with_its_raw_body(
    harness: Callable[..., Harness],
) -> None:
    """An outbox row that is not a valid envelope is dead-lettered with its raw body."""
    seen: list[tuple[str, str, int]] = []
    h = harness(recording_group("a", seen), external=(TripConfirmed,))
    await h.raw("bad-1", "trip.confirmed", {"trip_id": "T1", "n": 1}, {"traceparent": "x"})
    await h.settle()
    [letter] = await h.bus.dead_letters.list()
    assert (letter.kind, letter.event_id, letter.envelope) == ("malformed", "bad-1", None)
    assert "traceparent" in letter.reason
    assert letter.raw is not None
    assert '"traceparent":"x"' in letter.raw
    assert seen == []


async def test_undeclared_publish_is_an_error_that_dead_letters(
    harness: Callable[..., Harness],
) -> None:
    """A handler publishing a type it did not declare is dead-lettered and publishes nothing."""
    group = ConsumerGroup("sloppy")

    @group.handler(TripConfirmed)
    async def handle(event: TripConfirmed, ctx: HandlerContext) -> None:
        ctx.publish(PaymentCaptured(trip_id=event.trip_id, n=event.n))

    h = harness(group, external=(TripConfirmed,))
    await h.bus.publish(TripConfirmed(trip_id="T1", n=0), subject="T1")
    await h.settle()
    [letter] = await h.bus.dead_letters.list()
    assert "declares publishes=(nothing)" in letter.reason
    assert await h.store.outbox_count() == 1


async def test_prune_forgets_handled_events(harness: Callable[..., Harness]) -> None:
    """Pruning deletes handled inbox rows older than the horizon, and keeps newer ones."""
    seen: list[tuple[str, str, int]] = []
    group = recording_group("a", seen)
    h = harness(group, external=(TripConfirmed,))
    await h.bus.publish(TripConfirmed(trip_id="T1", n=0), subject="T1")
    await h.settle()
    await h.clock.advance(3600)
    await h.bus.publish(TripConfirmed(trip_id="T1", n=1), subject="T1")
    await h.settle()
    assert await h.bus.prune(older_than=1800) == 1
    assert await h.bus.prune(older_than=1800) == 0
    assert len(seen) == 2
