"""Property: lanes keep each lane in order and lose nothing across lost channels.

A broker double delivers each lane's messages in order over a channel, up to a prefetch
window, and requeues (at the head of their lane, in order) every message unacknowledged
on a channel that is lost, then redelivers them on the next channel, as RabbitMQ does.
Whatever the interleaving of publishes, channel losses, deliveries and handler retries,
once quiet: every message was acknowledged exactly once by the broker, the handler saw
each lane's messages first in publish order, and nothing is left queued in the lanes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from tripwright.bus import ACK, Delivery, Disposition, Retry
from tripwright.bus.lanes import Inflight, Lanes
from tripwright.errors import TransportError

LANES = ("a", "b", "c")


@dataclass
class Channel:
    closed: bool = False


@dataclass
class Broker:
    """Per-lane FIFO queues; unacknowledged messages belong to the channel they went on."""

    prefetch: int
    ready: dict[str, deque[int]] = field(default_factory=lambda: {k: deque() for k in LANES})
    unacked: dict[tuple[str, int], Channel] = field(default_factory=dict)
    acked: list[tuple[str, int]] = field(default_factory=list)
    published: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LANES, 0))
    channel: Channel = field(default_factory=Channel)

    def publish(self, lane: str) -> None:
        self.ready[lane].append(self.published[lane])
        self.published[lane] += 1

    def lose_channel(self) -> None:
        lost, self.channel = self.channel, Channel()
        lost.closed = True
        for lane in LANES:
            returned = sorted(s for (k, s), ch in self.unacked.items() if k == lane and ch is lost)
            self.ready[lane].extendleft(reversed(returned))
        self.unacked = {key: ch for key, ch in self.unacked.items() if ch is not lost}

    def pump(self, lanes: Lanes) -> None:
        """Deliver ready messages on the current channel, within the prefetch window."""
        for lane in LANES:
            while self.ready[lane] and len(self.unacked) < self.prefetch:
                seq = self.ready[lane].popleft()
                self.unacked[(lane, seq)] = self.channel
                body = f"{lane}:{seq}".encode()
                lanes.put(lane, Message(Delivery("t", body), self, self.channel, (lane, seq)))


class Message(Inflight):
    def __init__(
        self, delivery: Delivery, broker: Broker, channel: Channel, key: tuple[str, int]
    ) -> None:
        super().__init__(delivery)
        self._broker = broker
        self._channel = channel
        self._key = key

    async def ack(self) -> None:
        if self._channel.closed:
            raise TransportError("channel closed")
        del self._broker.unacked[self._key]
        self._broker.acked.append(self._key)

    async def reject(self) -> None:
        await self.ack()

    async def release(self) -> None:
        pass

    def stale(self) -> bool:
        return self._channel.closed


Step = tuple[str, str]  # ("publish", lane) | ("lose", "") | ("run", "")

steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.sampled_from(LANES)),
        st.tuples(st.sampled_from(["lose", "run", "pump"]), st.just("")),
    ),
    min_size=1,
    max_size=60,
)


async def _scenario(script: list[Step], prefetch: int, retried: set[str]) -> None:
    broker = Broker(prefetch)
    seen: dict[str, list[int]] = {lane: [] for lane in LANES}
    retry_left = set(retried)

    async def handler(batch: Sequence[Delivery]) -> list[Disposition]:
        out: list[Disposition] = []
        held: set[str] = set()
        for delivery in batch:
            lane, seq = delivery.body.decode().split(":")
            if lane in held:
                out.append(Retry(0.0))
                continue
            seen[lane].append(int(seq))
            if delivery.body.decode() in retry_left:
                retry_left.discard(delivery.body.decode())
                held.add(lane)
                out.append(Retry(0.0))
                continue
            out.append(ACK)
        await asyncio.sleep(0)  # a channel may be lost while the handler works
        return out

    lanes = Lanes(handler, prefetch)
    runner = asyncio.create_task(lanes.run())
    try:
        for action, lane in script:
            if action == "publish":
                broker.publish(lane)
            elif action == "lose":
                broker.lose_channel()
            elif action == "pump":
                broker.pump(lanes)
            else:
                await asyncio.sleep(0)
        for _ in range(2000):
            broker.pump(lanes)
            await asyncio.sleep(0)
            if len(broker.acked) == sum(broker.published.values()) and not lanes.size():
                break
        expected = [(lane, n) for lane in LANES for n in range(broker.published[lane])]
        assert sorted(broker.acked) == expected
        assert len(broker.acked) == len(set(broker.acked))
        for lane in LANES:
            firsts = list(dict.fromkeys(seen[lane]))
            assert firsts == list(range(broker.published[lane]))
        assert lanes.size() == 0
    finally:
        lanes.stop()
        await runner


@settings(max_examples=150, deadline=None)
@given(
    script=steps,
    prefetch=st.integers(min_value=1, max_value=5),
    retried=st.sets(st.sampled_from([f"{k}:{n}" for k in LANES for n in range(4)])),
)
def test_lanes_lose_nothing_and_keep_order_across_lost_channels(
    script: list[Step], prefetch: int, retried: set[str]
) -> None:
    """Each lane's messages are acknowledged once each, first seen in publish order,
    whatever channels are lost meanwhile."""
    asyncio.run(_scenario(script, prefetch, retried))
