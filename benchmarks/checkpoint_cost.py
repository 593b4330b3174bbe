"""What one step checkpoint costs PostgreSQL, next to a single-row commit.

One command (from the repository root)::

    python benchmarks/checkpoint_cost.py [--n 500]

On one connection, with no other load from this process, it times ``--n`` step
checkpoints (the engine's one-statement group commit with a batch of one: the run row and
two journal entries) and ``--n`` single-row ``UPDATE`` commits on the same table, and prints
the mean latency of each and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.engine_throughput import PG_DB, _ensure_pg_db
from tripwright.engine.records import Checkpoint, JournalEntry, NewRun, RunStatus
from tripwright.engine.store import create_store
from tripwright.engine.store.postgres import _checkpoint_statement


async def measure(n: int) -> tuple[float, float]:
    url = await _ensure_pg_db(PG_DB)
    store = create_store(url)
    await store.open()
    conn = await asyncpg.connect(url, server_settings={"plan_cache_mode": "force_generic_plan"})
    try:
        await store.create_runs(
            [NewRun("cp-1", "bench", "1", "h", "s", None, {}, "c", None, None, 0.0)]
        )
        [run] = await store.claim_runs("w", ["bench@1"], 1.0, 1, 1e9)
        seq = run.journal_seq

        def checkpoint() -> Checkpoint:
            nonlocal seq
            seq += 2
            entries = [
                JournalEntry("cp-1", seq - 1, "step_started", "s", 2.0, {"attempt": 1}, "c"),
                JournalEntry("cp-1", seq, "step_completed", "s", 2.0, {"attempt": 1}, "c"),
            ]
            return Checkpoint(
                run_id="cp-1",
                lease_owner="w",
                lease_epoch=run.lease_epoch,
                status=RunStatus.RUNNING,
                step="s",
                state='{"visits":{"s":1}}',
                context='{"n":1}',
                now=2.0,
                lease_expires_at=1e9,
                due_at=1.0,
                journal=entries,
            )

        for _ in range(20):
            sql, args = _checkpoint_statement([checkpoint()])
            await conn.fetch(sql, *args)
        started = time.perf_counter()
        for _ in range(n):
            sql, args = _checkpoint_statement([checkpoint()])
            await conn.fetch(sql, *args)
        per_checkpoint = (time.perf_counter() - started) / n
        started = time.perf_counter()
        for _ in range(n):
            await conn.execute("UPDATE runs SET updated_at = updated_at + 1 WHERE id = 'cp-1'")
        per_update = (time.perf_counter() - started) / n
    finally:
        await conn.close()
        await store.close()
    return per_checkpoint, per_update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    checkpoint, update = asyncio.run(measure(args.n))
    print(f"step checkpoint statement: {checkpoint * 1e3:.3f} ms")
    print(f"single-row UPDATE commit:  {update * 1e3:.3f} ms")
    print(f"ratio: {checkpoint / update:.2f}x")


if __name__ == "__main__":
    main()
