"""The in-process transport keeps the transport contract; URLs select transports."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tests.helpers import assert_eventually
from tripwright.bus import (
    ACK,
    CloudEvent,
    Delivery,
    Disposition,
    MemoryTransport,
    OutgoingMessage,
    Reject,
    Retry,
    create_transport,
)
from tripwright.errors import ConfigurationError, TransportClosedError


def _message(subject: str, n: int, topic: str = "trip") -> OutgoingMessage:
    envelope = CloudEvent.create(
        type="trip.step", source="/t", subject=subject, data={"n": n}, id=f"{subject}-{n}"
    )
    return OutgoingMessage(topic, envelope)


class Recorder:
    """A delivery handler that records ids and answers from a script."""

    def __init__(self, answers: dict[str, list[Disposition]] | None = None) -> None:
        self.seen: list[str] = []
        self.answers = answers or {}

    async def __call__(self, batch: Sequence[Delivery]) -> list[Disposition]:
        out: list[Disposition] = []
        for delivery in batch:
            event_id = CloudEvent.from_bytes(delivery.body).id
            self.seen.append(event_id)
            script = self.answers.get(event_id)
            out.append(script.pop(0) if script else ACK)
        return out


async def test_each_group_gets_every_message_in_subject_order() -> None:
    """Two groups each receive every message, each subject's in publish order."""
    transport = MemoryTransport()
    async with transport:
        first, second = Recorder(), Recorder()
        await transport.subscribe("a", ["trip"], first)
        await transport.subscribe("b", ["trip"], second, prefetch=3)
        await transport.publish([_message(s, n) for n in range(4) for s in ("x", "y")])
        await assert_eventually(lambda: _done(transport, first, second, 8))
    for seen in (first.seen, second.seen):
        assert sorted(seen) == sorted(f"{s}-{n}" for s in "xy" for n in range(4))
        for subject in "xy":
            expected = [f"{subject}-{n}" for n in range(4)]
            assert expected == [e for e in seen if e.startswith(subject)]


async def _done(transport: MemoryTransport, a: Recorder, b: Recorder, n: int) -> bool:
    return len(a.seen) >= n and len(b.seen) >= n and transport.pending("a") == 0


async def test_retry_is_redelivered_before_later_messages_of_its_subject() -> None:
    """A Retry holds its subject back: the message comes again, with attempt 2, first."""
    transport = MemoryTransport()
    attempts: list[tuple[str, int]] = []
    recorder = Recorder({"x-0": [Retry(0.01)], "bad": [Reject("poison")]})

    async def handler(batch: Sequence[Delivery]) -> Sequence[Disposition]:
        for delivery in batch:
            attempts.append((CloudEvent.from_bytes(delivery.body).id, delivery.attempt))
        return await recorder(batch)

    async with transport:
        await transport.subscribe("a", ["trip"], handler)
        await transport.publish([_message("x", 0), _message("x", 1)])
        await assert_eventually(lambda: _settled(transport))
    assert [a for a in attempts if a[0].startswith("x")] == [("x-0", 1), ("x-0", 2), ("x-1", 1)]


async def _settled(transport: MemoryTransport) -> bool:
    await asyncio.sleep(0)
    return transport.pending("a") == 0


async def test_rejected_message_is_removed_and_topics_filter() -> None:
    """A Reject removes a message for good; other topics never reach the group."""
    transport = MemoryTransport()
    envelope = CloudEvent.create(type="t", source="/t", subject="s", id="bad")
    recorder = Recorder({"bad": [Reject("poison")]})
    async with transport:
        await transport.subscribe("a", ["trip"], recorder)
        await transport.publish([OutgoingMessage("trip", envelope), _message("z", 0, "other")])
        await assert_eventually(lambda: _settled(transport))
        await asyncio.sleep(0.02)
    assert recorder.seen == ["bad"]


async def test_closed_transport_refuses_use() -> None:
    """Publishing on a transport that is not connected raises TransportClosedError."""
    with pytest.raises(TransportClosedError):
        await MemoryTransport().publish([_message("x", 0)])


def test_broker_urls_select_a_transport() -> None:
    """store:// (or nothing) is the default, memory:// in-process; others are refused."""
    assert create_transport(None) is None
    assert create_transport("store://") is None
    assert isinstance(create_transport("memory://"), MemoryTransport)
    with pytest.raises(ConfigurationError, match="unsupported broker URL scheme"):
        create_transport("kafka://localhost")
    with pytest.raises(ConfigurationError, match="bad broker URL"):
        create_transport("localhost:5672")
