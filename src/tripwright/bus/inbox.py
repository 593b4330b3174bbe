"""The consumer side of a broker: deliveries become events in a group's mailbox inbox.

:class:`InboxAcceptor` is the :data:`~tripwright.bus.base.DeliveryHandler` a transport
calls for one consumer group. It validates each envelope, queues the batch in the group's
mailbox runs in one transaction (an event id already in a mailbox's inbox is a duplicate:
acknowledged, not queued again), and answers with dispositions:

- ``Ack`` once the batch is committed (or for a type the group does not consume);
- ``Reject`` for a body that is not a valid envelope, after writing it, raw body and
  reason, to the dead-letter store;
- ``Retry`` for the whole batch when the store cannot be reached (nothing is lost: the
  broker redelivers, and the inbox absorbs what was committed after all).

It is also the group's :data:`~tripwright.bus.base.DeadLetterHandler`
(:meth:`InboxAcceptor.dead_lettered`): a message the broker gave up on goes to the same
dead-letter store as every other, so ``tripwright dlq`` lists and redrives it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from tripwright.bus.base import ACK, Delivery, Disposition, Reject, Retry
from tripwright.bus.envelope import CloudEvent
from tripwright.engine import codec
from tripwright.engine.clock import Clock, RealClock
from tripwright.engine.records import DeadLetter, InboxDelivery
from tripwright.engine.store.base import Store
from tripwright.errors import EnvelopeError, StoreError

__all__ = ["InboxAcceptor", "raw_text"]

#: How an envelope (a JSON object) and its topic become a group's delivery (None: the
#: group does not consume it).
GroupRoute = Callable[[dict[str, Any], str], InboxDelivery | None]


def raw_text(body: bytes) -> str:
    """A raw body as storable text (invalid UTF-8 and NUL escaped)."""
    return codec.safe_text(body.decode("utf-8", "backslashreplace"), 1_000_000)


class InboxAcceptor:
    """Accepts a consumer group's deliveries from a transport into its inbox."""

    def __init__(
        self,
        store: Store,
        group: str,
        route: GroupRoute,
        *,
        clock: Clock | None = None,
        retry_delay: float = 1.0,
        on_accepted: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.group = group
        self._route = route
        self._clock = clock or RealClock()
        self._retry_delay = retry_delay
        self._on_accepted = on_accepted
        self.accepted = 0
        self.duplicates = 0

    async def __call__(self, batch: Sequence[Delivery]) -> list[Disposition]:
        out: list[Disposition] = [ACK] * len(batch)
        queued: list[tuple[int, InboxDelivery]] = []
        for index, delivery in enumerate(batch):
            try:
                envelope = CloudEvent.from_bytes(delivery.body)
            except EnvelopeError as exc:
                out[index] = await self._poison(delivery, str(exc))
                continue
            routed = self._route(envelope.to_dict(), delivery.topic)
            if routed is not None:
                queued.append((index, routed))
        if queued:
            try:
                fresh = await self.store.deliver([d for _, d in queued], self._clock.now())
            except StoreError as exc:
                for index, _ in queued:
                    out[index] = Retry(self._retry_delay, codec.safe_text(exc, 200))
                return out
            self.accepted += sum(fresh)
            self.duplicates += len(fresh) - sum(fresh)
            if any(fresh) and self._on_accepted is not None:
                self._on_accepted(sum(fresh))
        return out

    async def dead_lettered(self, delivery: Delivery, reason: str) -> None:
        """Write a message the broker dead-lettered (delivered ``max_deliver`` times to
        consumers that died before settling it) to the dead-letter store, kind
        ``undeliverable``, with its envelope, so that a redrive queues it in its mailbox
        (once: if an earlier delivery did reach the inbox, the redrive adds nothing); a
        body that is no envelope is kept raw, kind ``malformed``. A type this group does
        not consume is dropped. :class:`StoreError` if the store cannot take it (the
        broker keeps the message and offers it again)."""
        try:
            envelope = CloudEvent.from_bytes(delivery.body)
        except EnvelopeError as exc:
            letter = _malformed(self.group, delivery, f"{reason}; {exc}")
        else:
            if self._route(envelope.to_dict(), delivery.topic) is None:
                return
            letter = DeadLetter(
                group=self.group,
                event_id=envelope.id,
                topic=delivery.topic,
                reason=codec.safe_text(reason, 2000),
                kind="undeliverable",
                type=envelope.type,
                subject=envelope.subject,
                envelope=codec.dumps(envelope.to_dict()),
                attempts=delivery.attempt,
            )
        await self.store.add_dead_letter(letter, self._clock.now())

    async def _poison(self, delivery: Delivery, reason: str) -> Disposition:
        try:
            await self.store.add_dead_letter(
                _malformed(self.group, delivery, reason), self._clock.now()
            )
        except StoreError as exc:
            return Retry(self._retry_delay, codec.safe_text(exc, 200))
        return Reject(reason)


def _malformed(group: str, delivery: Delivery, reason: str) -> DeadLetter:
    """The dead letter of a body that is not a valid envelope, kept raw."""
    event_id = delivery.headers.get("ce-id") or (
        "raw-" + hashlib.sha256(delivery.body).hexdigest()[:40]
    )
    return DeadLetter(
        group=group,
        event_id=codec.safe_text(event_id, 300),
        topic=delivery.topic,
        reason=codec.safe_text(reason, 2000),
        kind="malformed",
        raw=raw_text(delivery.body),
        attempts=delivery.attempt,
    )
