"""Shared fixtures: one parametrized ``store`` fixture runs each test on every store.

PostgreSQL tests use ``TRIPWRIGHT_PG_URL`` (default: the local server, and a database of
this test session's own, ``tripwright_test_<pid>``, dropped at the end, so that test runs
side by side never share tables). With ``CI=true`` an unreachable server fails those tests;
elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import hypothesis  # noqa: F401 - imported at collection: a late import from the plugin's
import pytest  # terminal summary trips a CPython 3.11 AST bug (recursion depth mismatch)

from tripwright.engine import Engine, EngineConfig, Flow, FlowRegistry, VirtualClock
from tripwright.engine.store import Store, create_store, upgrade

OWN_DATABASE = "TRIPWRIGHT_PG_URL" not in os.environ
PG_URL = os.environ.get(
    "TRIPWRIGHT_PG_URL", f"postgresql://postgres@127.0.0.1:5432/tripwright_test_{os.getpid()}"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TABLES = "runs, journal, run_events, outbox, dead_letters, relay_leases"


async def _prepare_pg(url: str) -> None:
    base, _, name = url.rpartition("/")
    admin = await asyncpg.connect(f"{base}/postgres", timeout=5)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"PostgreSQL is required in CI but unreachable: {reason}")
    pytest.skip(f"PostgreSQL unreachable ({reason}); set TRIPWRIGHT_PG_URL or start it")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A migrated PostgreSQL test database (this session's own unless configured)."""
    try:
        asyncio.run(_prepare_pg(PG_URL))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _unavailable(str(exc))
    upgrade(PG_URL)
    yield PG_URL
    if OWN_DATABASE:
        asyncio.run(_drop_pg(PG_URL))


async def _drop_pg(url: str) -> None:
    base, _, name = url.rpartition("/")
    admin = await asyncpg.connect(f"{base}/postgres", timeout=5)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname=$1 AND pid <> pg_backend_pid()",
            name,
        )
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await admin.close()


async def _truncate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY")
    finally:
        await conn.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite file."""
    url = f"sqlite:///{tmp_path / 'tripwright.db'}"
    upgrade(url)
    return url


@pytest.fixture
def clean_pg_url(pg_url: str) -> str:
    """The PostgreSQL test database, emptied."""
    asyncio.run(_truncate(pg_url))
    return pg_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty store URL, once per store kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tripwright.db'}"
        upgrade(url)
        return url
    url = request.getfixturevalue("pg_url")
    asyncio.run(_truncate(url))
    return str(url)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open store, once per store kind."""
    opened = create_store(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


FAST = EngineConfig(lease_ttl=30.0, heartbeat_interval=10.0, poll_interval=0.01)


@pytest.fixture
def make_engine(store: Store, clock: VirtualClock) -> Callable[..., Engine]:
    """Build an engine on the test store and virtual clock for some flows."""

    def build(*flows: Flow, config: EngineConfig = FAST) -> Engine:
        return Engine(store, FlowRegistry(flows), clock=clock, config=config)

    return build
