"""A sample five-step booking-like flow whose effects land in an external ledger.

The ledger stands in for a provider that honours idempotency keys: it records each key
once and counts how often it was called with it, so a re-executed step shows up as a
repeated call, never as a second effect.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from pathlib import Path

from tripwright.engine import Flow, RetryPolicy, StepContext

__all__ = ["LEDGER_ENV", "EffectLedger", "flows", "sample"]

LEDGER_ENV = "TRIPWRIGHT_DEMO_LEDGER"
FAILURE_RATE_ENV = "TRIPWRIGHT_DEMO_FAILURE_RATE"


class TransientProviderError(Exception):
    """The provider hiccuped; retrying helps."""


class EffectLedger:
    """A provider-side ledger of effects keyed by idempotency key (a SQLite file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, run_id TEXT NOT NULL, "
                "step TEXT NOT NULL, calls INTEGER NOT NULL, worker TEXT NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def apply(self, key: str, run_id: str, step: str, worker: str) -> bool:
        """Apply the effect for ``key`` once; True if this call applied it."""
        with self._connect() as conn:
            row = conn.execute(
                "INSERT INTO effects (key, run_id, step, calls, worker) VALUES (?,?,?,1,?) "
                "ON CONFLICT(key) DO UPDATE SET calls = calls + 1 RETURNING calls",
                (key, run_id, step, worker),
            ).fetchone()
            return bool(row[0] == 1)

    def rows(self) -> list[tuple[str, str, str, int, str]]:
        with self._connect() as conn:
            return list(conn.execute("SELECT key, run_id, step, calls, worker FROM effects"))


_ledger: EffectLedger | None = None


def _get_ledger() -> EffectLedger:
    global _ledger
    path = os.environ.get(LEDGER_ENV)
    if not path:
        raise RuntimeError(f"set {LEDGER_ENV} to the ledger file")
    if _ledger is None or _ledger.path != path:
        _ledger = EffectLedger(path)
    return _ledger


async def _provider_call(ctx: StepContext) -> None:
    await asyncio.sleep(random.uniform(0.002, 0.02))
    rate = float(os.environ.get(FAILURE_RATE_ENV, "0.05"))
    if random.random() < rate:
        raise TransientProviderError("provider returned 503")
    worker = os.environ.get("TRIPWRIGHT_WORKER_ID", str(os.getpid()))
    await asyncio.to_thread(_get_ledger().apply, ctx.idempotency_key, ctx.run_id, ctx.step, worker)


_retry = RetryPolicy(max_attempts=8, initial_interval=0.05, max_interval=1.0)
sample = Flow("demo.booking", version="1", default_retry=_retry, default_timeout=5.0)


@sample.step
async def hold_seat(ctx: StepContext) -> None:
    await _provider_call(ctx)
    ctx.context["seat"] = f"seat:{ctx.idempotency_key}"


@sample.step
async def hold_room(ctx: StepContext) -> None:
    await _provider_call(ctx)
    ctx.context["room"] = f"room:{ctx.idempotency_key}"


@sample.step
async def charge(ctx: StepContext) -> None:
    await _provider_call(ctx)
    ctx.context["charged"] = True


@sample.step
async def confirm(ctx: StepContext) -> None:
    await _provider_call(ctx)


@sample.step
async def notify(ctx: StepContext) -> None:
    await _provider_call(ctx)


flows = [sample]
