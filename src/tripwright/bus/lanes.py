"""Ordered hand-over of broker messages to a delivery handler, shared by the adapters.

A broker adapter puts each received message in a **lane** (a partition queue, a
partition consumer): lanes are FIFO, and a lane's messages reach the handler in order.
One handler call at a time takes, from every lane that is due, its queued messages (up
to ``prefetch`` in all), so a batch is in order per lane and mixes lanes.

The dispositions settle the messages: :class:`Ack` acknowledges, :class:`Reject` removes
without redelivery, :class:`Retry` keeps the message (unacknowledged, at the head of its
lane) and holds the whole lane back for the delay, then hands it over again with
``attempt`` counted up. Holding the message in the consumer, rather than giving it back to
the broker, keeps the lane in order and keeps the broker's own delivery count for what it
is meant for: deliveries to consumers that died (which end in the dead-letter store after
the configured number).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence

from tripwright.bus.base import Ack, Delivery, DeliveryHandler, Disposition, Reject, Retry
from tripwright.errors import TransportError

__all__ = ["Inflight", "Lanes"]

log = logging.getLogger("tripwright.bus")


class Inflight(ABC):
    """A received, unsettled broker message."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    @abstractmethod
    async def ack(self) -> None:
        """Acknowledge: the broker forgets the message."""

    @abstractmethod
    async def reject(self) -> None:
        """Remove the message without redelivery (it is in the dead-letter store)."""

    @abstractmethod
    async def release(self) -> None:
        """Give the message back to the broker for prompt redelivery (shutting down)."""

    async def touch(self) -> None:  # noqa: B027 - most brokers need no keep-alive
        """Tell the broker the message is still being worked on (held for a retry)."""

    def stale(self) -> bool:
        """True if the message came over a connection that is gone (it is redelivered)."""
        return False


class Lanes:
    """FIFO lanes of unsettled messages, handed to ``handler`` in order per lane."""

    def __init__(
        self, handler: DeliveryHandler, prefetch: int, *, keepalive: float | None = None
    ) -> None:
        if prefetch < 1:
            raise TransportError("prefetch must be >= 1")
        self._handler = handler
        self._prefetch = prefetch
        self._keepalive = keepalive
        self._lanes: dict[str, deque[Inflight]] = {}
        self._not_before: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._emptied: dict[str, asyncio.Event] = {}
        self._stopping = False

    def put(self, lane: str, item: Inflight) -> None:
        """Queue a received message at the tail of ``lane``."""
        self._lanes.setdefault(lane, deque()).append(item)
        self._emptied.setdefault(lane, asyncio.Event()).clear()
        self._changed.set()

    def size(self, lane: str | None = None) -> int:
        """How many messages are queued (in ``lane``, or in all)."""
        if lane is not None:
            return len(self._lanes.get(lane, ()))
        return sum(len(q) for q in self._lanes.values())

    async def wait_empty(self, lane: str) -> None:
        """Wait until every message of ``lane`` is settled."""
        if self._lanes.get(lane):
            await self._emptied[lane].wait()

    def drop(self, which: Callable[[Inflight], bool]) -> int:
        """Forget queued messages ``which`` selects (they are redelivered by the broker)."""
        dropped = 0
        for lane, queue in list(self._lanes.items()):
            keep = deque(item for item in queue if not which(item))
            dropped += len(queue) - len(keep)
            self._lanes[lane] = keep
            self._settled(lane)
        return dropped

    def _take(self, now: float) -> tuple[list[tuple[str, Inflight]], float | None]:
        batch: list[tuple[str, Inflight]] = []
        later: float | None = None
        for lane, queue in self._lanes.items():
            due = self._not_before.get(lane, 0.0)
            if due > now:
                later = due if later is None else min(later, due)
                continue
            for item in queue:
                if len(batch) >= self._prefetch:
                    return batch, later
                batch.append((lane, item))
        return batch, later

    async def run(self) -> None:
        """Hand messages over until :meth:`stop`; one handler call at a time."""
        loop = asyncio.get_running_loop()
        last_touch = loop.time()
        while not self._stopping:
            self.drop(lambda item: item.stale())
            batch, later = self._take(loop.time())
            if self._keepalive is not None and loop.time() - last_touch >= self._keepalive:
                await self._touch_all()
                last_touch = loop.time()
            if not batch:
                self._changed.clear()
                timeout = self._keepalive
                if later is not None:
                    wait = max(0.0, later - loop.time())
                    timeout = wait if timeout is None else min(timeout, wait)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout)
                continue
            await self._settle(batch, await self._call([item for _, item in batch]))

    async def _call(self, items: Sequence[Inflight]) -> Sequence[Disposition]:
        try:
            dispositions = await self._handler([item.delivery for item in items])
            if len(dispositions) != len(items):
                raise TransportError(
                    f"the handler settled {len(dispositions)} of {len(items)} deliveries"
                )
        except Exception as exc:  # a handler must not raise; hold everything for a retry
            log.warning("delivery handler failed, redelivering: %s", exc)
            return [Retry(1.0, str(exc))] * len(items)
        return dispositions

    async def _settle(
        self, batch: Sequence[tuple[str, Inflight]], dispositions: Sequence[Disposition]
    ) -> None:
        now = asyncio.get_running_loop().time()
        retried: set[str] = set()
        for (lane, item), disposition in zip(batch, dispositions, strict=True):
            if isinstance(disposition, Ack | Reject):
                try:
                    await (item.ack() if isinstance(disposition, Ack) else item.reject())
                except TransportError as exc:  # the broker redelivers it
                    log.warning("could not settle message %s: %s", item.delivery.message_id, exc)
                self._remove(lane, item)
            elif lane not in retried:
                retried.add(lane)
                item.delivery = _again(item.delivery)
                self._not_before[lane] = now + max(0.0, disposition.delay)
            else:
                item.delivery = _again(item.delivery)
        for lane in {lane for lane, _ in batch}:
            self._settled(lane)

    def _remove(self, lane: str, item: Inflight) -> None:
        queue = self._lanes[lane]
        with contextlib.suppress(ValueError):
            queue.remove(item)

    def _settled(self, lane: str) -> None:
        if not self._lanes.get(lane):
            self._lanes.pop(lane, None)
            self._not_before.pop(lane, None)
            self._emptied.setdefault(lane, asyncio.Event()).set()

    async def _touch_all(self) -> None:
        for queue in self._lanes.values():
            for item in queue:
                with contextlib.suppress(TransportError):
                    await item.touch()

    def stop(self) -> None:
        """Stop taking batches (the call in flight finishes and settles)."""
        self._stopping = True
        self._changed.set()

    async def release_all(self) -> None:
        """Give every queued message back to the broker."""
        for lane, queue in list(self._lanes.items()):
            for item in queue:
                with contextlib.suppress(TransportError):
                    await item.release()
            queue.clear()
            self._settled(lane)


def _again(delivery: Delivery) -> Delivery:
    return dataclasses.replace(delivery, attempt=delivery.attempt + 1)
