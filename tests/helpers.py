"""Test helpers: polling instead of sleeping, journal checks, driving a virtual clock."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from tripwright.engine import Engine, JournalEntry, VirtualClock, Worker
from tripwright.flows.events import EventBus


async def assert_eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` real seconds."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - polling a database, not an Event
            await asyncio.sleep(interval)


def assert_gapless(entries: list[JournalEntry]) -> None:
    """Journal sequence numbers are exactly 1..n in order."""
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))


def kinds(entries: list[JournalEntry]) -> list[str]:
    return [e.kind for e in entries]


async def drive(worker: Worker, clock: VirtualClock, *, max_jumps: int = 1000) -> int:
    """Run the worker until idle, advancing the virtual clock past in-flight timeouts."""
    task = asyncio.create_task(worker.run_until_idle())
    jumps = 0
    while not task.done():
        await asyncio.sleep(0.001)
        if not task.done() and clock.next_deadline() is not None:
            await clock.advance_to_next()
            jumps += 1
            assert jumps < max_jumps, "worker never went idle"
    return task.result()


async def settle(engine: Engine, worker: Worker, clock: VirtualClock, *, rounds: int = 50) -> None:
    """Process, then jump to the next due run, until no run is due any more."""
    for _ in range(rounds):
        await drive(worker, clock)
        due = await engine.store.next_due_at(engine.registry.keys(), include_leased=True)
        if due is None:
            return
        await clock.advance_to(max(due, clock.now()))
    raise AssertionError("runs still due after settling")


async def settle_events(
    engine: Engine, bus: EventBus, worker: Worker, clock: VirtualClock, *, rounds: int = 100
) -> None:
    """Relay and handle until nothing is unpublished, due or retrying."""
    store = engine.store
    for _ in range(rounds):
        moved = await bus.relay_once()
        await drive(worker, clock)
        due = await store.next_due_at(engine.registry.keys(), include_leased=True)
        if not moved and due is None and not await store.outbox_count(published=False):
            return
        if due is not None and due > clock.now():
            await clock.advance_to(due)
    raise AssertionError("events still moving after settling")


def run_python(
    code: str, directory: Path, name: str = "example.py"
) -> subprocess.CompletedProcess[str]:
    """Write ``code`` to a script in ``directory`` and run it with this interpreter."""
    script = directory / name
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
