# dbos is an optional (bench) dependency; where it is not installed its decorators are untyped.
# mypy: disallow-untyped-decorators=False
"""DBOS Transact peer benchmark, run as a subprocess.

DBOS keeps a process-wide singleton, so each measurement runs in its own
process::

    python benchmarks/_dbos_peer.py --store postgres|sqlite [--url URL]
        --runs N --concurrency C [--api sync|async|queue] [--stock]

It runs a durable workflow of exactly five ``@DBOS.step()`` steps (each one
increments a counter carried in its input) ``N`` times with ``C`` workflows in
flight, after a few untimed warm-up workflows, and prints exactly one JSON line
to stdout::

    {"runs_per_s": float, "steps_per_s": float, "runs": N, "seconds": float}

Everything DBOS (or anything else) would print goes to stderr.

The system database is recreated at start so runs are comparable:

* postgres: the database named by ``--url`` (default
  ``postgresql://postgres@127.0.0.1:5432/dbos_bench_sys``) is dropped, and DBOS
  creates and migrates it again at launch. Never point it at a database that
  holds anything else.
* sqlite: ``--url`` must be ``sqlite:///<path>``; the file (and any ``-wal``,
  ``-shm`` or ``-journal`` file beside it) is deleted first.
  Without ``--url`` a fresh temporary directory is used and removed afterwards.

How concurrency is driven (``--api``):

* ``sync`` (default): synchronous workflow and steps, started with
  ``DBOS.start_workflow`` in windows of ``C`` (start ``C`` workflows, wait for
  all of their results, repeat). DBOS runs each started workflow on its own
  executor thread. With dbos 3.4 this is DBOS's fastest option: its async API
  hands every system-database call to a worker thread (``asyncio.to_thread``)
  and pays for the extra hop, and queues add polling latency plus a dequeue
  transaction per workflow.
* ``async``: ``async def`` workflow and steps, ``C`` at a time via
  ``asyncio.gather`` windows on one event loop.
* ``queue``: ``DBOS.register_queue(worker_concurrency=C)``, all ``N`` workflows
  enqueued at once (enqueueing is inside the timed region), results awaited.

By default the system database engine is tuned for throughput without giving
up durability: the pool is sized for ``C``, SQLAlchemy's per-checkout
``pool_pre_ping`` round trip is off, and a SQLite system database is put into
WAL mode (DBOS otherwise leaves SQLite's rollback journal in place;
``synchronous`` stays at SQLite's default, FULL). ``--stock`` uses DBOS's
out-of-the-box settings instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from dbos import DBOS, DBOSConfig, WorkflowHandle

if TYPE_CHECKING:
    from collections.abc import Iterator

STEPS = 5
WARMUP_RUNS = 5
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/dbos_bench_sys"
QUEUE_NAME = "bench_peer"
QUEUE_POLLING_INTERVAL_SEC = 0.01
_SQLITE_PREFIX = "sqlite:///"

Store = Literal["postgres", "sqlite"]
Api = Literal["sync", "async", "queue"]


@DBOS.step()
def bump(counter: int) -> int:
    """Trivial step: increment the counter."""
    return counter + 1


@DBOS.workflow()
def five_steps(counter: int) -> int:
    """Durable workflow of exactly ``STEPS`` steps."""
    for _ in range(STEPS):
        counter = bump(counter)
    return counter


@DBOS.step()
async def bump_async(counter: int) -> int:
    """Trivial async step: increment the counter."""
    return counter + 1


@DBOS.workflow()
async def five_steps_async(counter: int) -> int:
    """Async durable workflow of exactly ``STEPS`` steps."""
    for _ in range(STEPS):
        counter = await bump_async(counter)
    return counter


def _check(start: int, result: int) -> None:
    if result != start + STEPS:
        msg = f"workflow({start}) returned {result}, expected {start + STEPS}"
        raise RuntimeError(msg)


def _windows(first: int, count: int, size: int) -> Iterator[range]:
    """Split ``first .. first + count - 1`` into consecutive ranges of ``size``."""
    end = first + count
    for lo in range(first, end, size):
        yield range(lo, min(lo + size, end))


def _run_sync(first: int, count: int, concurrency: int) -> None:
    for window in _windows(first, count, concurrency):
        handles: list[tuple[int, WorkflowHandle[int]]] = [
            (i, DBOS.start_workflow(five_steps, i)) for i in window
        ]
        for i, handle in handles:
            _check(i, handle.get_result())


async def _one_async(i: int) -> None:
    _check(i, await five_steps_async(i))


async def _run_async(first: int, count: int, concurrency: int) -> None:
    for window in _windows(first, count, concurrency):
        await asyncio.gather(*(_one_async(i) for i in window))


def _run_queue(first: int, count: int) -> None:
    queue = DBOS.retrieve_queue(QUEUE_NAME)
    if queue is None:
        msg = f"queue {QUEUE_NAME!r} is not registered"
        raise RuntimeError(msg)
    handles = [(i, queue.enqueue(five_steps, i)) for i in range(first, first + count)]
    for i, handle in handles:
        _check(i, handle.get_result())


def _run(api: Api, first: int, count: int, concurrency: int) -> None:
    if api == "sync":
        _run_sync(first, count, concurrency)
    elif api == "async":
        asyncio.run(_run_async(first, count, concurrency))
    else:
        _run_queue(first, count)


def _sqlite_path(url: str) -> Path:
    if not url.startswith(_SQLITE_PREFIX):
        msg = f"sqlite store needs a {_SQLITE_PREFIX}<path> URL, got {url!r}"
        raise ValueError(msg)
    return Path(url[len(_SQLITE_PREFIX) :])


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _enable_sqlite_wal(path: Path) -> None:
    """Create the database file in WAL mode (the mode persists in the file)."""
    conn = sqlite3.connect(path)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
    finally:
        conn.close()
    if mode is None or str(mode[0]).lower() != "wal":
        msg = f"could not enable WAL mode on {path}: {mode!r}"
        raise RuntimeError(msg)


def _config(url: str, concurrency: int, *, stock: bool) -> DBOSConfig:
    config: DBOSConfig = {
        "name": "dbos_bench_peer",
        "system_database_url": url,
        "log_level": "WARNING",
    }
    if not stock:
        # Enough connections for every in-flight workflow plus DBOS's own
        # background threads.
        config["sys_db_pool_size"] = max(20, concurrency + 8)
        engine_kwargs: dict[str, Any] = {"pool_pre_ping": False}
        config["db_engine_kwargs"] = engine_kwargs
    return config


def measure(
    url: str,
    runs: int,
    concurrency: int,
    *,
    api: Api = "sync",
    stock: bool = False,
) -> dict[str, float | int]:
    """Launch DBOS on a fresh system database and time ``runs`` workflows."""
    sqlite_path = _sqlite_path(url) if url.startswith("sqlite") else None
    DBOS(config=_config(url, concurrency, stock=stock))
    try:
        if sqlite_path is None:
            DBOS.reset_system_database()  # DROP DATABASE ... WITH (FORCE)
        else:
            _remove_sqlite_files(sqlite_path)
            if not stock:
                _enable_sqlite_wal(sqlite_path)
        DBOS.launch()
        if api == "queue":
            DBOS.register_queue(
                QUEUE_NAME,
                worker_concurrency=concurrency,
                polling_interval_sec=QUEUE_POLLING_INTERVAL_SEC,
            )

        _run(api, -WARMUP_RUNS, WARMUP_RUNS, concurrency)

        start = time.perf_counter()
        _run(api, 0, runs, concurrency)
        seconds = time.perf_counter() - start
    finally:
        DBOS.destroy(destroy_registry=False)
    return {
        "runs_per_s": runs / seconds,
        "steps_per_s": runs * STEPS / seconds,
        "runs": runs,
        "seconds": seconds,
    }


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("postgres", "sqlite"), required=True)
    parser.add_argument(
        "--url",
        default=None,
        help=(
            "system database URL (recreated at start); postgres default "
            f"{DEFAULT_PG_URL}, sqlite default a fresh temporary file"
        ),
    )
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--api", choices=("sync", "async", "queue"), default="sync")
    parser.add_argument(
        "--stock",
        action="store_true",
        help="use DBOS's default engine settings (no pool sizing, pre-ping, WAL)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.concurrency < 1:
        parser.error("--runs and --concurrency must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = _parse_args(argv)
    store: Store = args.store
    api: Api = args.api
    out: TextIO = sys.stdout
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    with contextlib.ExitStack() as stack:
        # Only the JSON result may reach stdout.
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        url: str
        if args.url is not None:
            url = args.url
        elif store == "postgres":
            url = DEFAULT_PG_URL
        else:
            tmp = tempfile.mkdtemp(prefix="dbos_bench_")
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
            url = f"{_SQLITE_PREFIX}{Path(tmp) / 'dbos_sys.sqlite'}"
        if store == "sqlite":
            _sqlite_path(url)
        elif url.startswith("sqlite"):
            msg = f"postgres store needs a postgresql:// URL, got {url!r}"
            raise ValueError(msg)
        result = measure(url, args.runs, args.concurrency, api=api, stock=args.stock)
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
