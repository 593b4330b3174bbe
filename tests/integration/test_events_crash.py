"""Consumer groups in a real worker process that is SIGKILLed mid-burst; another finishes.

Counted from the outside, from the outbox and the inboxes: every event published (from
the API and by handlers) is relayed, every group applied each of its events exactly
once, in subject order, and nothing was dead-lettered.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers import assert_eventually
from tests.integration.event_flows import TripStep, audit, billing, booking
from tests.integration.processes import WorkerProcesses, db_sessions, sessions_ended
from tripwright.demo.job import spawn_worker
from tripwright.engine.store import Store, create_store
from tripwright.flows.events import EventBus

pytestmark = pytest.mark.slow

FLOWS_REF = "tests.integration.event_flows:booking"
LEASE_TTL = 1.5
SUBJECTS = 40
PER_SUBJECT = 10
EVENTS = SUBJECTS * PER_SUBJECT
#: Inbox rows once everything is handled: billing and audit get each step, audit each charge.
INBOX_ROWS = 3 * EVENTS


async def _scalar(db_url: str, sql: str) -> Any:
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.split("///", 1)[1])
        try:
            return conn.execute(sql).fetchone()[0]
        finally:
            conn.close()
    pg = await asyncpg.connect(db_url)
    try:
        return await pg.fetchval(sql)
    finally:
        await pg.close()


async def _consumed(db_url: str) -> int:
    return int(await _scalar(db_url, "SELECT count(*) FROM run_events WHERE status='consumed'"))


async def _state(store: Store, group: Any, subject: str) -> dict[str, list[str]]:
    return dict((await store.get_run(group.mailbox(subject))).context)


async def test_a_sigkilled_worker_loses_no_event_and_applies_none_twice(
    db_url: str, tmp_path: Path, workers: WorkerProcesses
) -> None:
    """Worker A is SIGKILLed while handling a burst; worker B finishes: every event is
    relayed and applied once per group, in subject order; nothing is dead-lettered."""
    store = create_store(db_url)
    await store.open()
    try:
        bus = EventBus(store, booking)
        subjects = [f"T{s:03d}" for s in range(SUBJECTS)]
        steps = [TripStep(trip_id=t, n=n) for n in range(PER_SUBJECT) for t in subjects]
        await bus.publish_many(
            steps,
            subjects=[e.trip_id for e in steps],
            ids=[f"{e.trip_id}-{e.n}" for e in steps],
        )
        before = await db_sessions(db_url)
        ledger = tmp_path / "unused-ledger.db"
        workers.adopt(
            "worker-A",
            spawn_worker(db_url, "worker-A", ledger, lease_ttl=LEASE_TTL, flows=FLOWS_REF),
        )

        async def a_is_mid_way() -> bool:
            return await _consumed(db_url) >= INBOX_ROWS // 3

        await workers.kill_when("worker-A", a_is_mid_way)
        await sessions_ended(db_url, before)
        assert await _consumed(db_url) < INBOX_ROWS, "worker A finished before it was killed"

        workers.adopt(
            "worker-B",
            spawn_worker(db_url, "worker-B", ledger, lease_ttl=LEASE_TTL, flows=FLOWS_REF),
        )

        async def all_handled() -> bool:
            workers.assert_alive("worker-B")
            return await _consumed(db_url) >= INBOX_ROWS

        await assert_eventually(all_handled, timeout=90)
        assert await workers.terminate("worker-B") == 0, workers.log("worker-B")

        # The outbox: the steps and one charge per step, all relayed, none twice.
        assert await store.outbox_count() == 2 * EVENTS
        assert await store.outbox_count(published=False) == 0
        charges = await _scalar(
            db_url, "SELECT count(DISTINCT event_id) FROM outbox WHERE type='payment.charged'"
        )
        assert charges == EVENTS
        # The inboxes: each group applied each of its events once, in subject order.
        assert await _scalar(db_url, "SELECT count(*) FROM run_events") == INBOX_ROWS
        assert await _consumed(db_url) == INBOX_ROWS
        for subject in subjects:
            expected = [f"{subject}-{n}" for n in range(PER_SUBJECT)]
            assert expected == (await _state(store, billing, subject))["handled"]
            audited = await _state(store, audit, subject)
            assert expected == audited["trip.step"]
            assert len(set(audited["payment.charged"])) == PER_SUBJECT
            assert len(audited["payment.charged"]) == PER_SUBJECT
        assert await store.list_dead_letters() == []
    finally:
        await store.close()
