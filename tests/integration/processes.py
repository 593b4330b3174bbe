"""Real ``tripwright worker`` processes for integration tests, never outliving a test."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from tests.helpers import assert_eventually


async def db_sessions(db_url: str) -> set[int] | None:
    """Pids of the other PostgreSQL sessions on the database (None for SQLite).

    A worker killed mid-commit may still have a commit in flight: a test waits until the
    dead worker's sessions are gone before it reads what the worker left.
    """
    if not db_url.startswith("postgresql"):
        return None
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return {row[0] for row in rows}


async def sessions_ended(db_url: str, before: set[int] | None) -> None:
    """Wait until the only sessions left on the database are those in ``before``."""

    async def gone() -> bool:
        now = await db_sessions(db_url)
        return now is None or before is None or now <= before

    await assert_eventually(gone, timeout=10)


class WorkerProcesses:
    """The worker subprocesses of one test, by worker id, each logging to ``<id>.log``.

    Whatever is still alive at teardown is killed (see the ``workers`` fixture).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def adopt(self, worker_id: str, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        """Track a worker process started by the test."""
        self.procs[worker_id] = proc
        return proc

    def spawn_module(self, worker_id: str, module: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``python -m module args...`` (logging to ``<id>.log``) and track it."""
        with open(self.directory / f"{worker_id}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args], stdout=log, stderr=subprocess.STDOUT
            )
        return self.adopt(worker_id, proc)

    def log(self, worker_id: str, *, tail: int = 3000) -> str:
        path = self.directory / f"{worker_id}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else "(no log)"

    def assert_alive(self, *worker_ids: str) -> None:
        """Fail with the worker's log if it exited (all workers if none is named)."""
        for worker_id in worker_ids or tuple(self.procs):
            code = self.procs[worker_id].poll()
            assert code is None, f"{worker_id} exited with {code}:\n{self.log(worker_id)}"

    async def kill_when(
        self, worker_id: str, ready: Callable[[], Awaitable[bool]], *, timeout: float = 30.0
    ) -> None:
        """SIGKILL the worker as soon as ``ready()`` holds (failing if it exits first)."""

        async def check() -> bool:
            self.assert_alive(worker_id)
            return await ready()

        await assert_eventually(check, timeout=timeout)
        proc = self.procs[worker_id]
        proc.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(proc.wait, 10) == -signal.SIGKILL

    async def terminate(self, worker_id: str, timeout: float = 20.0) -> int:
        """SIGTERM (graceful shutdown); SIGKILL and fail if it has not exited in time."""
        proc = self.procs[worker_id]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return await self._wait(worker_id, timeout)

    async def _wait(self, worker_id: str, timeout: float) -> int:
        # One SIGTERM only: a second one could land after the worker removed its handler
        # on the way out, and kill it.
        proc = self.procs[worker_id]
        try:
            return await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
            raise AssertionError(f"{worker_id} ignored SIGTERM:\n{self.log(worker_id)}") from None

    async def terminate_all(self, timeout: float = 20.0) -> dict[str, int]:
        """SIGTERM every worker at once, then wait for each; their exit codes by id."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        return {worker_id: await self._wait(worker_id, timeout) for worker_id in self.procs}

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
