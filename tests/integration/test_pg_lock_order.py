"""A worker's heartbeat and its own group commit never deadlock on PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tripwright.engine import Checkpoint, RunStatus
from tripwright.engine.records import NewRun
from tripwright.engine.store import create_store

pytestmark = pytest.mark.postgres


async def test_heartbeat_and_group_commit_lock_rows_in_one_order(clean_pg_url: str) -> None:
    """A commit whose batch lists rows in descending id order and a heartbeat over the
    same rows, lined up by a third session holding one row, both succeed."""
    other = await asyncpg.connect(clean_pg_url)
    store = create_store(clean_pg_url)
    await store.open()
    try:
        await store.create_runs(
            [
                NewRun(f"r{i:05d}", "f", "1", "h", "s", None, {}, "c", None, None, 0.0)
                for i in range(2000)
            ]
        )
        await other.execute("ANALYZE runs")
        claimed = {r.id: r for r in await store.claim_runs("w", ["f@1"], 1.0, 2000, 600.0)}
        low, high = "r00001", "r00009"
        batch = [
            Checkpoint(
                run_id=r,
                lease_owner="w",
                lease_epoch=claimed[r].lease_epoch,
                status=RunStatus.RUNNING,
                step="s",
                state="{}",
                context="{}",
                now=2.0,
                lease_expires_at=700.0,
            )
            for r in (high, low)
        ]
        tx = other.transaction()
        await tx.start()
        await other.execute("SELECT 1 FROM runs WHERE id=$1 FOR UPDATE", high)
        commit = asyncio.create_task(store.commit(batch))
        await asyncio.sleep(0.2)
        beat = asyncio.create_task(store.heartbeat("w", [low, high], 3.0, 600.0))
        await asyncio.sleep(0.2)
        await tx.commit()
        committed, held = await asyncio.gather(commit, beat)
        assert committed == [True, True]
        assert held == {low, high}
    finally:
        await other.close()
        await store.close()
