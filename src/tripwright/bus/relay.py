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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tripwright.bus.envelope import CloudEvent
from tripwright.errors import EnvelopeError, StoreClosedError, TripwrightError

__all__ = ["OutboxRecord", "OutboxRelay", "outbox_envelope"]

log = logging.getLogger("tripwright.bus")


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A committed outbox row."""

    id: int
    event_id: str
    run_id: str
    topic: str
    type: str
    subject: str | None
    data: Any
    headers: dict[str, Any]
    created_at: float


def outbox_envelope(record: OutboxRecord) -> CloudEvent:
    """The CloudEvents envelope of an outbox row (its headers hold the envelope's
    attributes beyond id, type, subject and data: source, dataschema, trace context)."""
    headers = record.headers
    extensions = {
        k: v
        for k, v in headers.items()
        if k not in ("source", "dataschema", "traceparent", "correlationid", "time")
    }
    try:
        return CloudEvent.model_validate(
            {
                "id": record.event_id,
                "source": headers.get("source") or f"/tripwright/runs/{record.run_id or 'api'}",
                "type": record.type,
                "subject": record.subject,
                "time": datetime.fromtimestamp(record.created_at, UTC),
                "dataschema": headers.get("dataschema"),
                "data": record.data,
                "traceparent": headers.get("traceparent"),
                "correlationid": headers.get("correlationid"),
                **extensions,
            },
            strict=False,
        )
    except ValueError as exc:
        raise EnvelopeError(f"outbox row {record.id} is not a valid envelope: {exc}") from None


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

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; store and transport errors are retried."""
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
