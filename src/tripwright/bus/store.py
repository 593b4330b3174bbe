"""The default transport: the store itself.

:class:`StoreRelay` moves committed outbox rows straight into the consumer groups'
mailbox inboxes and marks them published, all in one transaction: an event reaches each
group's inbox exactly once (the inbox would absorb a duplicate anyway). One relay runs at
a time per database: SQLite serialises writers; PostgreSQL takes a transaction-scoped
advisory lock (a worker that finds it taken relays nothing this round; a crashed relay's
lock goes with its connection, and its uncommitted batch is relayed again by the next).
"""

from __future__ import annotations

from collections.abc import Callable

from tripwright.bus.relay import OutboxRelay
from tripwright.engine.clock import Clock, RealClock
from tripwright.engine.store.base import Router, Store

__all__ = ["StoreRelay"]


class StoreRelay(OutboxRelay):
    """Relays outbox rows into mailbox inboxes, in the store, in batches of ``batch``."""

    def __init__(
        self,
        store: Store,
        route: Router,
        *,
        clock: Clock | None = None,
        batch: int = 500,
        on_relayed: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self._store = store
        self._route = route
        self._clock = clock or RealClock()
        self._batch = batch
        self._on_relayed = on_relayed

    async def relay_once(self) -> int:
        moved = await self._store.relay_outbox(self._route, self._batch, self._clock.now())
        if moved and self._on_relayed is not None:
            self._on_relayed(moved)
        return moved
