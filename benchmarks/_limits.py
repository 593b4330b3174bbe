"""Physical-limit measurements: how many durable commits per second the storage can do.

These numbers are the ceiling that any durable-workflow engine built on the same
storage can approach: every durable step needs at least one commit, so
``steps_per_s <= commit_rate`` (modulo group commit / batching).

Nothing here runs at import time.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Protocol

# asyncpg ships no type information of its own; asyncpg-stubs may or may not be
# installed, so accept both and type the connection through a local protocol.
import asyncpg  # type: ignore[import-untyped, unused-ignore]

__all__ = ["pg_commit_rate", "sqlite_commit_rate"]

_WARMUP_SECONDS = 0.5

_PG_CREATE = "CREATE TABLE IF NOT EXISTS bench_limit (id int PRIMARY KEY, n bigint NOT NULL)"
_PG_SEED = (
    "INSERT INTO bench_limit (id, n) SELECT g, 0 FROM generate_series(1, $1) AS g "
    "ON CONFLICT (id) DO NOTHING"
)
_PG_UPDATE = "UPDATE bench_limit SET n = n + 1 WHERE id = $1"


class _PgConnection(Protocol):
    """The subset of ``asyncpg.Connection`` used here."""

    async def execute(self, query: str, *args: object) -> str: ...

    async def close(self) -> None: ...


async def _pg_connect(dsn: str) -> _PgConnection:
    conn: _PgConnection = await asyncpg.connect(dsn)
    return conn


async def _pg_worker(conn: _PgConnection, row_id: int, warmup_end: float, end: float) -> int:
    """Run autocommit UPDATEs until ``end``; count those completed after warm-up."""
    count = 0
    while True:
        await conn.execute(_PG_UPDATE, row_id)
        now = time.perf_counter()
        if now >= warmup_end:
            count += 1
        if now >= end:
            return count


async def pg_commit_rate(dsn: str, connections: int, seconds: float = 5.0) -> float:
    """Measure PostgreSQL single-row UPDATE commits per second.

    ``connections`` asyncpg connections each update their own row of
    ``bench_limit`` in a tight loop; outside an explicit transaction every
    statement is its own transaction, so every UPDATE is one commit (one WAL
    flush, subject to the server's ``synchronous_commit`` / group commit).

    Returns total committed transactions per second across all connections,
    measured over ``seconds`` of wall time after a ~0.5 s warm-up.
    """
    if connections < 1:
        msg = "connections must be >= 1"
        raise ValueError(msg)
    if seconds <= 0:
        msg = "seconds must be > 0"
        raise ValueError(msg)

    setup = await _pg_connect(dsn)
    try:
        await setup.execute(_PG_CREATE)
        await setup.execute(_PG_SEED, connections)
    finally:
        await setup.close()

    conns = list(await asyncio.gather(*(_pg_connect(dsn) for _ in range(connections))))
    try:
        start = time.perf_counter()
        warmup_end = start + _WARMUP_SECONDS
        end = warmup_end + seconds
        counts = await asyncio.gather(
            *(_pg_worker(conn, i + 1, warmup_end, end) for i, conn in enumerate(conns))
        )
        elapsed = time.perf_counter() - warmup_end
    finally:
        await asyncio.gather(*(conn.close() for conn in conns))
    return sum(counts) / elapsed


_SQLITE_SYNCHRONOUS = frozenset({"OFF", "NORMAL", "FULL", "EXTRA", "0", "1", "2", "3"})


def sqlite_commit_rate(path: str, synchronous: str = "FULL", seconds: float = 5.0) -> float:
    """Measure SQLite (WAL mode) single-row UPDATE commits per second.

    One connection in autocommit mode (``isolation_level=None``) runs
    ``BEGIN; UPDATE ...; COMMIT`` in a loop. With ``synchronous=FULL`` every
    commit fsyncs the WAL; with ``NORMAL`` WAL commits are not fsynced (durable
    against application crashes, not against power loss).

    Returns commits per second measured over ``seconds`` after a ~0.5 s warm-up.
    """
    mode = synchronous.upper()
    if mode not in _SQLITE_SYNCHRONOUS:
        msg = f"invalid synchronous mode: {synchronous!r}"
        raise ValueError(msg)
    if seconds <= 0:
        msg = "seconds must be > 0"
        raise ValueError(msg)

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        journal = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if journal is None or str(journal[0]).lower() != "wal":
            msg = f"could not enable WAL mode on {path!r}: {journal!r}"
            raise RuntimeError(msg)
        conn.execute(f"PRAGMA synchronous={mode}")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_limit (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"
        )
        conn.execute("INSERT OR IGNORE INTO bench_limit (id, n) VALUES (1, 0)")

        def one_commit() -> None:
            conn.execute("BEGIN")
            conn.execute("UPDATE bench_limit SET n = n + 1 WHERE id = 1")
            conn.execute("COMMIT")

        warmup_end = time.perf_counter() + _WARMUP_SECONDS
        while time.perf_counter() < warmup_end:
            one_commit()

        count = 0
        start = time.perf_counter()
        end = start + seconds
        while True:
            one_commit()
            count += 1
            now = time.perf_counter()
            if now >= end:
                break
        elapsed = now - start
    finally:
        conn.close()
    return count / elapsed
