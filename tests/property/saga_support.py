"""What the saga property tests share: settings, fresh stores, and the engine config."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import asyncpg
from hypothesis import HealthCheck, settings

from tripwright.engine import EngineConfig
from tripwright.engine.store import upgrade

CONFIG = EngineConfig(lease_ttl=10.0, heartbeat_interval=3.0, poll_interval=0.01)
COMPENSATION_ATTEMPTS = 3
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
Check = Callable[[str, dict[str, Any]], Coroutine[Any, Any, None]]


def on_fresh_sqlite(check: Check, scenario: dict[str, Any]) -> None:
    """Run ``check`` on a new, migrated SQLite file."""
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'saga.db'}"
        upgrade(url)
        asyncio.run(check(url, scenario))


def on_emptied_postgres(check: Check, url: str, scenario: dict[str, Any]) -> None:
    """Run ``check`` on the PostgreSQL test database, emptied first."""
    asyncio.run(_truncate(url))
    asyncio.run(check(url, scenario))


async def _truncate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE runs, journal, run_events, outbox RESTART IDENTITY")
    finally:
        await conn.close()
