"""A flow for worker subprocesses whose every step execution is recorded in PostgreSQL.

Loaded by ``tripwright worker --flows tests.integration.overlap_flows:flows``. Each step
execution (successful, failed or interrupted) writes (run_id, step, attempt, worker,
started, ended, outcome) to :data:`TABLE` in the database named by :data:`DSN_ENV`, so a
test can check that no run was ever executed by two workers at once.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import asyncpg

from tripwright.engine import Flow, RetryPolicy, StepContext

__all__ = ["CREATE_TABLE", "DSN_ENV", "STEPS", "TABLE", "WORKER_ENV", "flows", "overlap"]

DSN_ENV = "TRIPWRIGHT_OVERLAP_DSN"
WORKER_ENV = "TRIPWRIGHT_WORKER_ID"
FAILURE_RATE = 0.1
TABLE = "overlap_step_executions"
CREATE_TABLE = f"""
CREATE TABLE {TABLE} (
  id bigserial PRIMARY KEY,
  run_id text NOT NULL,
  step text NOT NULL,
  attempt int NOT NULL,
  worker text NOT NULL,
  started float8 NOT NULL,
  ended float8 NOT NULL,
  outcome text NOT NULL
)
"""
STEPS = ("reserve", "price", "pay", "confirm")


class Hiccup(Exception):
    """A transient failure: the step is retried, possibly by the other worker."""


_pool: asyncpg.Pool | None = None
_pool_lock = asyncio.Lock()


async def _get_pool() -> asyncpg.Pool:
    global _pool
    async with _pool_lock:
        if _pool is None:
            dsn = os.environ.get(DSN_ENV)
            if not dsn:
                raise RuntimeError(f"set {DSN_ENV} to the database of {TABLE}")
            _pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    return _pool


async def _record(ctx: StepContext, started: float, ended: float, outcome: str) -> None:
    pool = await _get_pool()
    await pool.execute(
        f"INSERT INTO {TABLE} (run_id, step, attempt, worker, started, ended, outcome) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        ctx.run_id,
        ctx.step,
        ctx.attempt,
        os.environ.get(WORKER_ENV, str(os.getpid())),
        started,
        ended,
        outcome,
    )


async def _execute(ctx: StepContext) -> None:
    """Take a few milliseconds, sometimes fail; record the execution however it ends."""
    started = time.time()
    outcome = "interrupted"
    try:
        await asyncio.sleep(random.uniform(0.003, 0.012))
        if random.random() < FAILURE_RATE:
            outcome = "failed"
            raise Hiccup("transient failure")
        outcome = "ok"
    finally:
        ended = time.time()
        await asyncio.shield(_record(ctx, started, ended, outcome))


overlap = Flow(
    "test.overlap",
    version="1",
    default_retry=RetryPolicy(max_attempts=30, initial_interval=0.005, max_interval=0.05),
    default_timeout=10.0,
)
for _name in STEPS:
    overlap.add_step(_name, _execute)

flows = [overlap]
