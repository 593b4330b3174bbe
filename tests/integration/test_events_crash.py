"""Consumer groups in a real worker process that is SIGKILLed mid-burst; another finishes.

Counted from the outside, from the outbox and the inboxes: every event published (from
the API and by handlers) is relayed, every group applied each of its events exactly
once, in subject order, and nothing was dead-lettered.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import assert_eventually
from tests.integration.event_counts import (
    assert_applied_once,
    consumed,
    inbox_rows,
    publish_steps,
    subjects_of,
)
from tests.integration.event_flows import booking
from tests.integration.processes import WorkerProcesses, db_sessions, sessions_ended
from tripwright.demo.job import spawn_worker
from tripwright.engine.store import create_store
from tripwright.flows.events import EventBus

pytestmark = pytest.mark.slow

FLOWS_REF = "tests.integration.event_flows:booking"
LEASE_TTL = 1.5
SUBJECTS = 40
PER_SUBJECT = 10
INBOX_ROWS = inbox_rows(SUBJECTS * PER_SUBJECT)


async def test_a_sigkilled_worker_loses_no_event_and_applies_none_twice(
    db_url: str, tmp_path: Path, workers: WorkerProcesses
) -> None:
    """Worker A is SIGKILLed while handling a burst; worker B finishes: every event is
    relayed and applied once per group, in subject order; nothing is dead-lettered."""
    store = create_store(db_url)
    await store.open()
    try:
        bus = EventBus(store, booking)
        subjects = subjects_of(SUBJECTS)
        await publish_steps(bus, subjects, range(PER_SUBJECT))
        before = await db_sessions(db_url)
        ledger = tmp_path / "unused-ledger.db"
        workers.adopt(
            "worker-A",
            spawn_worker(db_url, "worker-A", ledger, lease_ttl=LEASE_TTL, flows=FLOWS_REF),
        )

        async def a_is_mid_way() -> bool:
            return await consumed(db_url) >= INBOX_ROWS // 3

        await workers.kill_when("worker-A", a_is_mid_way)
        await sessions_ended(db_url, before)
        assert await consumed(db_url) < INBOX_ROWS, "worker A finished before it was killed"

        workers.adopt(
            "worker-B",
            spawn_worker(db_url, "worker-B", ledger, lease_ttl=LEASE_TTL, flows=FLOWS_REF),
        )

        async def all_handled() -> bool:
            workers.assert_alive("worker-B")
            return await consumed(db_url) >= INBOX_ROWS

        await assert_eventually(all_handled, timeout=90)
        assert await workers.terminate("worker-B") == 0, workers.log("worker-B")

        await assert_applied_once(store, db_url, subjects, PER_SUBJECT)
    finally:
        await store.close()
