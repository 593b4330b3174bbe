"""The outbox relay: moves committed outbox rows to the consumer groups, in order.

A step's published events are rows in the ``outbox`` table, committed with the step's
checkpoint. A relay reads committed rows that are not published yet, oldest first, hands
them on, and marks them published. Its contract:

- **Nothing committed is lost.** A row is marked published only after its delivery is
  durable (in the inboxes, or confirmed by the broker). A relay that crashes in between
  leaves the rows unpublished; the next relay sends them again.
- **Duplicates are allowed, and absorbed.** Re-sent rows carry the same event id, which
  the inboxes refuse a second time.
- **One relay at a time per outbox**, however many workers run one: rows are relayed in id
  order, which keeps the events of one subject in the order their steps committed. (Many
  relays taking disjoint rows with ``SKIP LOCKED`` would scale further, but could publish
  a subject's later event first.) How the store ensures it is said by each implementation.

Implementations: ``StoreRelay`` (the default: rows go straight into the groups' inboxes in
the same transaction that marks them published, so delivery is effectively exactly once)
and ``TransportRelay`` (publishes to a broker with confirmation, then marks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any

from tripwright.bus.base import OutgoingMessage, Transport
from tripwright.bus.envelope import CONTENT_TYPE, CloudEvent
from tripwright.engine import codec
from tripwright.engine.clock import Clock, RealClock
from tripwright.engine.records import DeadLetter, OutboxRecord
from tripwright.engine.store.base import Store
from tripwright.errors import (
    ContextNotSerializableError,
    EnvelopeError,
    StoreClosedError,
    TripwrightError,
)

__all__ = [
    "OutboxRecord",
    "OutboxRelay",
    "TransportRelay",
    "outbox_envelope",
    "outbox_envelope_dict",
]

log = logging.getLogger("tripwright.bus")


def outbox_envelope_dict(record: OutboxRecord) -> dict[str, Any]:
    """The CloudEvents envelope of an outbox row as a JSON object, not yet validated (its
    headers hold the attributes beyond id, type, subject and data: source, dataschema,
    trace context, extensions)."""
    headers = record.headers
    value: dict[str, Any] = {
        k: v for k, v in headers.items() if k not in ("id", "type", "subject", "data", "time")
    }
    value.update(
        specversion="1.0",
        id=record.event_id,
        type=record.type,
        time=datetime.fromtimestamp(record.created_at, UTC).isoformat().replace("+00:00", "Z"),
        datacontenttype=CONTENT_TYPE,
    )
    value.setdefault("source", f"/tripwright/runs/{record.run_id or 'api'}")
    if record.subject is not None:
        value["subject"] = record.subject
    if record.data is not None:
        value["data"] = record.data
    return value


def outbox_envelope(record: OutboxRecord) -> CloudEvent:
    """The validated envelope of an outbox row; :class:`EnvelopeError` if it is not one."""
    return CloudEvent.from_dict(outbox_envelope_dict(record))


class OutboxRelay(ABC):
    """Relays committed outbox rows; run one per worker (they take turns)."""

    #: Seconds between polls when idle (a local publish wakes it at once).
    poll_interval: float = 0.05

    def __init__(self) -> None:
        self._wakeup = asyncio.Event()
        self.relayed = 0

    @abstractmethod
    async def relay_once(self) -> int:
        """Relay one batch of unpublished rows, oldest first; return how many were
        marked published (0 if none were due, or another relay holds the turn)."""

    def notify(self) -> None:
        """Tell the relay that rows were committed (it relays them without waiting)."""
        self._wakeup.set()

    async def release(self) -> None:  # noqa: B027 - relays without a lease hold nothing
        """Hand back whatever turn this relay holds (it is shutting down cleanly)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set, then :meth:`release`; store and transport errors
        (a broker that went away, say) are retried with backoff, the rows staying
        unpublished until a publish is confirmed."""
        try:
            await self._loop(stop)
        finally:
            with contextlib.suppress(TripwrightError):
                await self.release()

    async def _loop(self, stop: asyncio.Event) -> None:
        backoff = self.poll_interval
        while not stop.is_set():
            try:
                moved = await self.relay_once()
                backoff = self.poll_interval
            except StoreClosedError:
                return
            except TripwrightError as exc:
                log.warning("outbox relay failed, retrying in %.2fs: %s", backoff, exc)
                moved = 0
                backoff = min(backoff * 2, 5.0)
            self.relayed += moved
            if moved:
                continue
            self._wakeup.clear()
            waiters = [
                asyncio.ensure_future(self._wakeup.wait()),
                asyncio.ensure_future(stop.wait()),
            ]
            try:
                await asyncio.wait(waiters, timeout=backoff, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter


class TransportRelay(OutboxRelay):
    """Publishes outbox rows to a broker, then marks them published.

    The relay holds a lease (``relay_leases``, name ``relay``) while it works, so one
    relay publishes at a time across every worker; a crashed relay's lease expires after
    ``lease_ttl`` and another takes over, republishing what was not marked (the inboxes
    absorb the duplicates). A lease lost mid-batch (a long stall) makes the mark fail:
    the new holder publishes those rows again. A relay that stops cleanly hands the lease
    back, so another worker's relay goes on at once.
    """

    def __init__(
        self,
        store: Store,
        transport: Transport,
        *,
        owner: str,
        clock: Clock | None = None,
        batch: int = 500,
        lease_ttl: float = 10.0,
        relay: str = "outbox",
    ) -> None:
        super().__init__()
        self._store = store
        self._transport = transport
        self._owner = owner
        self._clock = clock or RealClock()
        self._batch = batch
        self._lease_ttl = lease_ttl
        self._relay = relay
        self._holding = False

    async def relay_once(self) -> int:
        claimed = await self._store.claim_outbox(
            self._relay, self._owner, self._clock.now(), self._lease_ttl, self._batch
        )
        self._holding = claimed is not None
        if claimed is None:
            return 0
        epoch, rows = claimed
        if not rows:
            return 0
        messages = []
        poison = []
        for row in rows:
            try:
                messages.append(OutgoingMessage(row.topic, outbox_envelope(row), outbox_id=row.id))
            except (EnvelopeError, ContextNotSerializableError) as bad:
                poison.append((row, bad))
        for row, exc in poison:
            # Nothing can carry it: record it where operators look, once, and move on.
            await self._store.add_dead_letter(
                DeadLetter(
                    group="outbox",
                    event_id=row.event_id,
                    topic=row.topic,
                    reason=codec.safe_text(exc, 2000),
                    kind="malformed",
                    type=row.type,
                    subject=row.subject,
                    raw=codec.dumps(outbox_envelope_dict(row)),
                    first_seen_at=row.created_at,
                ),
                self._clock.now(),
            )
        if messages:
            await self._transport.publish(messages)
        marked = await self._store.mark_published(
            self._relay, self._owner, epoch, [r.id for r in rows], self._clock.now()
        )
        if not marked:
            log.info("relay lease lost before marking %d rows; the next holder resends", len(rows))
            return 0
        return len(rows)

    async def release(self) -> None:
        if self._holding:
            # A lease that expires now: the next claim by any owner takes it.
            await self._store.claim_outbox(self._relay, self._owner, self._clock.now(), 0.0, 0)
            self._holding = False
