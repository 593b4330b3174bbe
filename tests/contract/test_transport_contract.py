"""The transport contract, written once and run on every transport (memory, RabbitMQ, NATS)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tests.brokers import Backend
from tests.helpers import assert_eventually
from tripwright.bus import (
    ACK,
    CloudEvent,
    Delivery,
    Disposition,
    OutgoingMessage,
    Reject,
    Retry,
)
from tripwright.errors import EnvelopeError, TransportClosedError

TOPIC = "trips"
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def message(subject: str, n: int, topic: str = TOPIC) -> OutgoingMessage:
    envelope = CloudEvent.create(
        type="trip.step",
        source="/contract",
        subject=subject,
        data={"n": n},
        id=f"{subject}-{n}",
        version=1,
        traceparent=TRACE,
        correlationid=f"corr-{subject}",
    )
    return OutgoingMessage(topic, envelope)


class Recorder:
    """A delivery handler: records what it handles, in order, and answers from a script.

    Later messages of a subject it retried in the same batch get a Retry too (the
    contract), without being recorded as handled.
    """

    def __init__(self, answers: dict[str, list[Disposition]] | None = None) -> None:
        self.seen: list[str] = []
        self.deliveries: list[Delivery] = []
        self.answers = answers or {}

    async def __call__(self, batch: Sequence[Delivery]) -> list[Disposition]:
        out: list[Disposition] = []
        blocked: set[str] = set()
        for delivery in batch:
            try:
                envelope = CloudEvent.from_bytes(delivery.body)
            except EnvelopeError as exc:
                self.seen.append("poison")
                self.deliveries.append(delivery)
                out.append(Reject(str(exc)))
                continue
            key = envelope.subject or envelope.id
            if key in blocked:
                out.append(Retry(0.05))
                continue
            self.seen.append(envelope.id)
            self.deliveries.append(delivery)
            script = self.answers.get(envelope.id)
            answer = script.pop(0) if script else ACK
            if isinstance(answer, Retry):
                blocked.add(key)
            out.append(answer)
        return out

    def handled(self) -> set[str]:
        return set(self.seen)


def in_subject_order(seen: Sequence[str], subject: str, count: int) -> bool:
    expected = [f"{subject}-{n}" for n in range(count)]
    firsts: list[str] = []
    for event_id in seen:
        if event_id.startswith(f"{subject}-") and event_id not in firsts:
            firsts.append(event_id)
    return expected == firsts


async def subscribe(backend: Backend, group: str, handler: Recorder, **kwargs: object):  # type: ignore[no-untyped-def]
    backend.groups.add(group)
    backend.topics.add(TOPIC)
    transport = backend.make()
    await transport.connect()
    return transport, await transport.subscribe(group, [TOPIC], handler, **kwargs)  # type: ignore[arg-type]


async def test_every_group_gets_every_message_in_subject_order(backend: Backend) -> None:
    """Two groups each receive every message once, each subject's in publish order."""
    first, second = Recorder(), Recorder()
    transport, _ = await subscribe(backend, "billing", first)
    await subscribe(backend, "mailing", second)
    subjects = [f"T{i}" for i in range(6)]
    await transport.publish([message(s, n) for n in range(5) for s in subjects])
    expected = {f"{s}-{n}" for s in subjects for n in range(5)}

    async def done() -> bool:
        return first.handled() == expected and second.handled() == expected

    await assert_eventually(done, timeout=20)
    for recorder in (first, second):
        assert [True] * len(subjects) == [in_subject_order(recorder.seen, s, 5) for s in subjects]


async def test_headers_carry_cloudevents_attributes_and_trace_context(backend: Backend) -> None:
    """A delivery's body is the envelope as published; headers carry the ce- attributes."""
    recorder = Recorder()
    transport, _ = await subscribe(backend, "audit", recorder)
    sent = message("T1", 0)
    await transport.publish([sent])

    async def done() -> bool:
        return recorder.handled() == {"T1-0"}

    await assert_eventually(done, timeout=20)
    delivery = recorder.deliveries[0]
    assert sent.envelope == CloudEvent.from_bytes(delivery.body)
    headers = delivery.headers
    expected = {
        "ce-id": "T1-0",
        "ce-type": "trip.step",
        "ce-subject": "T1",
        "ce-specversion": "1.0",
        "ce-traceparent": TRACE,
        "ce-correlationid": "corr-T1",
    }
    assert expected == {k: headers.get(k) for k in expected}


async def test_retry_holds_its_subject_and_comes_again_first(backend: Backend) -> None:
    """A Retry is handed over again, attempt counted up, before its subject's later messages."""
    recorder = Recorder({"A-0": [Retry(0.2), Retry(0.1)]})
    transport, _ = await subscribe(backend, "orders", recorder)
    await transport.publish([message("A", n) for n in range(3)] + [message("B", 0)])

    async def done() -> bool:
        return recorder.handled() == {"A-0", "A-1", "A-2", "B-0"}

    await assert_eventually(done, timeout=20)
    attempts = [
        (CloudEvent.from_bytes(d.body).id, d.attempt)
        for d in recorder.deliveries
        if CloudEvent.from_bytes(d.body).subject == "A"
    ]
    assert attempts[:3] == [("A-0", 1), ("A-0", 2), ("A-0", 3)]
    assert in_subject_order(recorder.seen, "A", 3)
    assert recorder.seen.index("B-0") < recorder.seen.index("A-1")


async def test_rejected_poison_is_removed_and_not_redelivered(backend: Backend) -> None:
    """A raw body that is not an envelope reaches the handler as is; Reject removes it."""
    recorder = Recorder()
    transport, subscription = await subscribe(backend, "poison", recorder)
    await backend.put_raw(transport, "poison", TOPIC, b"\x00not json")
    await transport.publish([message("C", 0)])

    async def done() -> bool:
        return {"poison", "C-0"} <= recorder.handled()

    await assert_eventually(done, timeout=20)
    raw = [d.body for d in recorder.deliveries if not d.body.startswith(b"{")]
    assert raw == [b"\x00not json"]
    await subscription.close()
    again = Recorder()
    await subscribe(backend, "poison", again)
    await transport.publish([message("C", 1)])

    async def next_done() -> bool:
        return "C-1" in again.handled()

    await assert_eventually(next_done, timeout=20)
    assert again.seen == ["C-1"]


async def test_one_group_shares_its_messages_among_subscriptions_in_order(
    backend: Backend,
) -> None:
    """Two subscriptions of one group handle each message, in order per subject overall."""
    seen: list[str] = []
    one, two = Recorder(), Recorder()
    one.seen = two.seen = seen
    transport, _ = await subscribe(backend, "shared", one, prefetch=4)
    await subscribe(backend, "shared", two, prefetch=4)
    subjects = [f"S{i}" for i in range(8)]
    await transport.publish([message(s, n) for n in range(6) for s in subjects])
    expected = {f"{s}-{n}" for s in subjects for n in range(6)}

    async def done() -> bool:
        return set(seen) == expected

    await assert_eventually(done, timeout=30)
    assert [True] * len(subjects) == [in_subject_order(seen, s, 6) for s in subjects]


async def test_messages_wait_for_a_group_that_is_not_consuming(backend: Backend) -> None:
    """Published while the group's subscription is closed, messages reach its next one."""
    first = Recorder()
    transport, subscription = await subscribe(backend, "later", first)
    await subscription.close()
    await transport.publish([message("D", n) for n in range(3)])
    second = Recorder()
    await subscribe(backend, "later", second)

    async def done() -> bool:
        return second.handled() == {"D-0", "D-1", "D-2"}

    await assert_eventually(done, timeout=20)
    assert first.seen == []
    assert second.seen == ["D-0", "D-1", "D-2"]


async def test_close_drains_the_handler_call_in_flight(backend: Backend) -> None:
    """Closing waits for the handler call in flight and settles it: no redelivery after."""
    entered, release = asyncio.Event(), asyncio.Event()
    handled: list[str] = []

    async def slow(batch: Sequence[Delivery]) -> list[Disposition]:
        entered.set()
        await release.wait()
        handled.extend(CloudEvent.from_bytes(d.body).id for d in batch)
        return [ACK] * len(batch)

    backend.groups.add("drain")
    backend.topics.add(TOPIC)
    transport = backend.make()
    await transport.connect()
    subscription = await transport.subscribe("drain", [TOPIC], slow)
    await transport.publish([message("E", 0)])
    await asyncio.wait_for(entered.wait(), 20)
    closing = asyncio.create_task(subscription.close())
    await asyncio.sleep(0.1)
    assert not closing.done()
    release.set()
    await asyncio.wait_for(closing, 20)
    assert handled == ["E-0"]
    again = Recorder()
    await subscribe(backend, "drain", again)
    await transport.publish([message("E", 1)])

    async def done() -> bool:
        return "E-1" in again.handled()

    await assert_eventually(done, timeout=20)
    assert again.seen == ["E-1"]


async def test_use_before_connect_or_after_close_is_refused(backend: Backend) -> None:
    """Publishing or subscribing on a transport that is not connected raises clearly."""
    transport = backend.make()
    if backend.name == "memory":
        await transport.close()
    with pytest.raises(TransportClosedError):
        await transport.publish([message("F", 0)])
    await transport.connect()
    await transport.close()
    with pytest.raises(TransportClosedError):
        await transport.subscribe("closed", [TOPIC], Recorder())


@pytest.mark.parametrize("backend", ["rabbitmq", "nats"], indirect=True)
async def test_a_message_whose_consumers_keep_dying_is_dead_lettered(backend: Backend) -> None:
    """After max_deliver deliveries to consumers that died, the broker gives the message up
    and a subscription of the group hands it to on_dead_letter, not to its handler."""
    backend.groups.add("dying")
    backend.topics.add(TOPIC)
    letters: list[tuple[str, int]] = []

    async def on_dead_letter(delivery: Delivery, reason: str) -> None:
        letters.append((CloudEvent.from_bytes(delivery.body).id, delivery.attempt))

    attempts: list[int] = []
    for death in range(backend.options.max_deliver):
        stuck = asyncio.Event()

        async def hang(
            batch: Sequence[Delivery], stuck: asyncio.Event = stuck
        ) -> Sequence[Disposition]:
            attempts.extend(d.attempt for d in batch)
            stuck.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        consumer = backend.make()
        await consumer.connect()
        await consumer.subscribe("dying", [TOPIC], hang, on_dead_letter=on_dead_letter)
        if death == 0:
            await consumer.publish([message("Z", 0)])
        await asyncio.wait_for(stuck.wait(), 30)
        await backend.abandon(consumer)
    survivor = Recorder()
    await subscribe(backend, "dying", survivor, on_dead_letter=on_dead_letter)

    async def done() -> bool:
        return len(letters) >= 1

    await assert_eventually(done, timeout=30)
    assert [event_id for event_id, _ in letters] == ["Z-0"]
    assert attempts == list(range(1, backend.options.max_deliver + 1))
    assert survivor.seen == []
