"""An in-process transport: the broker contract without a broker.

:class:`MemoryTransport` keeps a queue per consumer group in memory (declared by the
group's first subscription, as a durable queue would be), delivers each subject's messages
in order, one unsettled message per subject at a time, and redelivers a :class:`Retry`
after its delay, before any later message of that subject. Use it to test handlers and
transport-level code without a broker; it is not durable across processes (the default
store-backed transport is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from tripwright.bus.base import (
    Ack,
    DeadLetterHandler,
    Delivery,
    DeliveryHandler,
    OutgoingMessage,
    Reject,
    Retry,
    Subscription,
    Transport,
)
from tripwright.errors import TransportClosedError, TransportError

__all__ = ["MemoryTransport"]

log = logging.getLogger("tripwright.bus")


@dataclass(slots=True)
class _Pending:
    delivery: Delivery
    not_before: float = 0.0


@dataclass(slots=True)
class _Group:
    topics: set[str] = field(default_factory=set)
    by_key: dict[str, deque[_Pending]] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, key: str, delivery: Delivery) -> None:
        self.by_key.setdefault(key, deque()).append(_Pending(delivery))
        self.changed.set()

    def take(self, limit: int, now: float) -> tuple[list[tuple[str, _Pending]], float | None]:
        """Up to ``limit`` heads of idle subjects that are due, and the next due time."""
        batch: list[tuple[str, _Pending]] = []
        later: float | None = None
        for key, queue in self.by_key.items():
            if len(batch) >= limit:
                break
            if key in self.busy or not queue:
                continue
            head = queue[0]
            if head.not_before > now:
                later = head.not_before if later is None else min(later, head.not_before)
                continue
            self.busy.add(key)
            batch.append((key, head))
        return batch, later


class _MemorySubscription(Subscription):
    def __init__(self, group: _Group) -> None:
        self.group = group
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Stop taking batches; the handler call in flight finishes and is settled."""
        self.stopping = True
        self.group.changed.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class MemoryTransport(Transport):
    """In-process transport (``memory://``): per-group queues, order per subject."""

    scheme = "memory"

    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}
        self._subscriptions: list[_MemorySubscription] = []
        self._connected = False
        self.published = 0

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        self._connected = False
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.close()

    def _check(self) -> None:
        if not self._connected:
            raise TransportClosedError("the memory transport is not connected")

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        self._check()
        for message in messages:
            body = message.body
            headers = message.envelope.headers()
            for group in self._groups.values():
                if message.topic in group.topics:
                    group.put(message.key, Delivery(message.topic, body, headers))
            self.published += 1

    def put_raw(self, group: str, topic: str, key: str, body: bytes) -> None:
        """Queue a raw body for ``group`` as if a broker delivered it (poison tests)."""
        self._check()
        self._groups[group].put(key, Delivery(topic, body, {}))

    def pending(self, group: str) -> int:
        """How many messages of ``group`` are not settled yet."""
        found = self._groups.get(group)
        return 0 if found is None else sum(len(q) for q in found.by_key.values())

    async def subscribe(
        self,
        group: str,
        topics: Sequence[str],
        handler: DeliveryHandler,
        *,
        prefetch: int = 64,
        on_dead_letter: DeadLetterHandler | None = None,
    ) -> Subscription:
        self._check()
        if prefetch < 1:
            raise TransportError("prefetch must be >= 1")
        state = self._groups.setdefault(group, _Group())
        state.topics.update(topics)
        subscription = _MemorySubscription(state)
        subscription.task = asyncio.create_task(
            self._consume(subscription, handler, prefetch), name=f"consume {group}"
        )
        self._subscriptions.append(subscription)
        return subscription

    async def _consume(
        self, subscription: _MemorySubscription, handler: DeliveryHandler, prefetch: int
    ) -> None:
        loop = asyncio.get_running_loop()
        group = subscription.group
        while not subscription.stopping:
            batch, later = group.take(prefetch, loop.time())
            if not batch:
                group.changed.clear()
                timeout = None if later is None else max(0.0, later - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(group.changed.wait(), timeout)
                continue
            try:
                dispositions = await handler([p.delivery for _, p in batch])
                if len(dispositions) != len(batch):
                    raise TransportError(
                        f"the handler settled {len(dispositions)} of {len(batch)} deliveries"
                    )
            except Exception as exc:  # a handler must not raise; redeliver everything
                log.warning("delivery handler failed, redelivering: %s", exc)
                dispositions = [Retry(1.0, str(exc))] * len(batch)
            for (key, pending), disposition in zip(batch, dispositions, strict=True):
                group.busy.discard(key)
                queue = group.by_key[key]
                if isinstance(disposition, Ack | Reject):
                    queue.popleft()
                    if not queue:
                        del group.by_key[key]
                else:
                    old = pending.delivery
                    queue[0] = _Pending(
                        Delivery(old.topic, old.body, old.headers, old.attempt + 1, old.message_id),
                        loop.time() + disposition.delay,
                    )
            group.changed.set()
