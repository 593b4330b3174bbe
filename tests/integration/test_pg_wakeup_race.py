"""An event sent while a PostgreSQL checkpoint is being written still wakes the run.

Both tests hold a sender's transaction open (running the store's own statements) while a
checkpoint statement starts, so that the checkpoint's snapshot predates the event and its
row lock waits for the sender: the interleaving that loses a wake-up if the checkpoint
trusts its snapshot.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tripwright.engine import Checkpoint, RunStatus
from tripwright.engine.records import NewRun
from tripwright.engine.store import Store, create_store
from tripwright.engine.store.postgres import WAKE_ON_SEND

pytestmark = pytest.mark.postgres


def _waiting(epoch: int, now: float, consumed: list[int]) -> Checkpoint:
    return Checkpoint(
        run_id="r1",
        lease_owner="w",
        lease_epoch=epoch,
        status=RunStatus.WAITING,
        step="s",
        state="{}",
        context="{}",
        now=now,
        lease_expires_at=None,
        due_at=None,
        wait_names="|paid|",
        release=True,
        consumed_events=consumed,
    )


async def _race(
    store: Store, sender: asyncpg.Connection, checkpoint: Checkpoint, at: float
) -> None:
    """Commit ``checkpoint`` while a send of 'paid' at ``at`` commits under it."""
    tx = sender.transaction()
    await tx.start()
    await sender.execute("SELECT status FROM runs WHERE id='r1' FOR NO KEY UPDATE")
    await sender.execute(
        "INSERT INTO run_events (run_id, name, payload, kind, status, visible_at, created_at) "
        "VALUES ('r1', 'paid', 'null', 'event', 'pending', $1, $1)",
        at,
    )
    await sender.execute(WAKE_ON_SEND, at, "r1", "|paid|")
    writing = asyncio.create_task(store.commit([checkpoint]))
    await asyncio.sleep(0.3)
    assert not writing.done(), "the checkpoint should wait for the sender's row lock"
    await tx.commit()
    assert await writing == [True]


async def test_event_sent_while_a_started_run_begins_to_wait_is_not_lost(
    clean_pg_url: str,
) -> None:
    """A run turning from running to waiting does not miss an event sent meanwhile."""
    store = create_store(clean_pg_url)
    await store.open()
    sender = await asyncpg.connect(clean_pg_url)
    try:
        await store.create_runs([NewRun("r1", "f", "1", "h", "s", None, {}, "c", None, None, 0.0)])
        [run] = await store.claim_runs("w", ["f@1"], 1.0, 1, 60.0)
        await _race(store, sender, _waiting(run.lease_epoch, 3.0, []), 2.0)
        after = await store.get_run("r1")
        assert after.status is RunStatus.WAITING
        assert after.due_at is not None
        assert after.due_at <= 3.0
    finally:
        await sender.close()
        await store.close()


async def test_event_sent_while_a_woken_run_waits_again_is_not_lost(clean_pg_url: str) -> None:
    """A claimed run whose row still reads 'waiting', consuming one event and waiting for
    the next, does not miss the next one sent meanwhile."""
    store = create_store(clean_pg_url)
    await store.open()
    sender = await asyncpg.connect(clean_pg_url)
    try:
        await store.create_runs([NewRun("r1", "f", "1", "h", "s", None, {}, "c", None, None, 0.0)])
        [run] = await store.claim_runs("w", ["f@1"], 1.0, 1, 60.0)
        assert await store.commit([_waiting(run.lease_epoch, 1.5, [])]) == [True]
        first = await store.send_event("r1", "paid", "1", 2.0)
        [run] = await store.claim_runs("w", ["f@1"], 2.5, 1, 60.0)
        assert run.status is RunStatus.WAITING
        await _race(store, sender, _waiting(run.lease_epoch, 3.5, [first]), 3.0)
        after = await store.get_run("r1")
        assert [e.visible_at for e in await store.pending_events("r1")] == [3.0]
        assert after.due_at is not None
        assert await store.claim_runs("w2", ["f@1"], 4.0, 1, 60.0) != []
    finally:
        await sender.close()
        await store.close()
