"""A consumer process that dies with messages unacknowledged, for the SIGKILL tests::

    python -m tests.integration.stalling_consumer DB_URL BROKER_URL REPORT STALL_AFTER

It consumes every group of ``tests.integration.event_flows:booking`` into its inbox, as a
worker's event bus does (no relay, no handlers). After ``STALL_AFTER`` committed batches
each further batch is committed in the inbox and then held for ever, never acknowledged;
``REPORT`` (JSON) lists the event ids so held; ``REPORT.ready`` appears once every
group is subscribed. The test SIGKILLs the process: the broker
must redeliver those (the inbox absorbs them) and everything it had not taken yet.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.integration.event_flows import booking
from tripwright.bus import create_transport
from tripwright.bus.inbox import InboxAcceptor
from tripwright.engine.records import InboxDelivery
from tripwright.engine.store import create_store


async def consume(db_url: str, broker_url: str, report: Path, stall_after: int) -> None:
    store = create_store(db_url)
    await store.open()
    transport = create_transport(broker_url)
    assert transport is not None, "a broker URL is needed"
    await transport.connect()
    deliver = store.deliver
    committed = 0
    held: list[str] = []

    async def deliver_then_stall(deliveries: Sequence[InboxDelivery], now: float) -> list[bool]:
        nonlocal committed
        fresh = await deliver(deliveries, now)
        committed += 1
        if committed > stall_after:
            held.extend(d.dedupe_key for d in deliveries)
            await asyncio.to_thread(_write_whole, report, json.dumps(held))
            await asyncio.Event().wait()  # committed, never acknowledged
        return fresh

    store.deliver = deliver_then_stall  # type: ignore[method-assign]
    for group in booking.groups:
        acceptor = InboxAcceptor(store, group.name, group.delivery)
        await transport.subscribe(group.name, group.topics, acceptor)
    await asyncio.to_thread(report.with_suffix(".ready").touch)
    await asyncio.Event().wait()


def _write_whole(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` appears whole or not at all (the test may kill us)."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)


if __name__ == "__main__":
    db, broker, path, after = sys.argv[1:5]
    asyncio.run(consume(db, broker, Path(path), int(after)))
