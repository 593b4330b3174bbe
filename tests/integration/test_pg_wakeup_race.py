"""An event sent while a PostgreSQL checkpoint is being written still wakes the run."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tripwright.engine import Checkpoint, RunStatus
from tripwright.engine.records import NewRun
from tripwright.engine.store import create_store

pytestmark = pytest.mark.postgres


async def test_event_committed_during_a_waiting_checkpoint_is_not_lost(
    clean_pg_url: str,
) -> None:
    """A send that commits after the checkpoint's snapshot but before its row lock
    leaves the run due, so the event is delivered (no lost wake-up)."""
    store = create_store(clean_pg_url)
    await store.open()
    sender = await asyncpg.connect(clean_pg_url)
    try:
        await store.create_runs([NewRun("r1", "f", "1", "h", "s", None, {}, "c", None, None, 0.0)])
        [run] = await store.claim_runs("w", ["f@1"], 1.0, 1, 60.0)
        # The sender's transaction, as send_event runs it, holds the row and is
        # not yet committed when the checkpoint statement starts.
        tx = sender.transaction()
        await tx.start()
        await sender.execute("SELECT status FROM runs WHERE id='r1' FOR NO KEY UPDATE")
        await sender.execute(
            "INSERT INTO run_events (run_id, name, payload, kind, status, visible_at, "
            "created_at) VALUES ('r1', 'paid', 'null', 'event', 'pending', 2.0, 2.0)"
        )
        await sender.execute(
            "UPDATE runs SET event_hint = LEAST(COALESCE(event_hint, 2.0), 2.0) "
            "WHERE id='r1' AND status <> 'waiting'"
        )
        checkpoint = Checkpoint(
            run_id="r1",
            lease_owner="w",
            lease_epoch=run.lease_epoch,
            status=RunStatus.WAITING,
            step="s",
            state="{}",
            context="{}",
            now=3.0,
            lease_expires_at=None,
            due_at=None,
            wait_names="|paid|",
            release=True,
        )
        writing = asyncio.create_task(store.commit([checkpoint]))
        await asyncio.sleep(0.3)
        assert not writing.done(), "the checkpoint should wait for the sender's row lock"
        await tx.commit()
        assert await writing == [True]
        after = await store.get_run("r1")
        assert after.status is RunStatus.WAITING
        assert after.due_at is not None
        assert after.due_at <= 3.0
    finally:
        await sender.close()
        await store.close()
