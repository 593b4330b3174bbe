"""Heartbeats on every store: a run the worker let go of itself is not a lost lease; a run
taken over by another worker is, and its execution here is stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from tripwright.engine import (
    Checkpoint,
    Engine,
    EngineConfig,
    Flow,
    RunStatus,
    StepContext,
    VirtualClock,
    Worker,
)
from tripwright.engine.store import Store

MakeEngine = Callable[..., Engine]
CONFIG = EngineConfig(lease_ttl=10.0, heartbeat_interval=3.0, poll_interval=0.01)


async def _noop(ctx: StepContext) -> None:
    return None


async def _stop(worker: Worker, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    for _ in range(400):
        if not worker.active_runs:
            break
        await asyncio.sleep(0.005)
    stop.set()
    await task


async def test_a_heartbeat_that_finds_a_run_its_execution_just_released_loses_nothing(
    store: Store, make_engine: MakeEngine, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's last checkpoint has released its lease but its execution has not
    finished when a heartbeat reads the run: that is no lost lease, and the execution is
    not stopped."""
    flow = Flow("finishing")
    flow.add_step("only", _noop)
    engine = make_engine(flow, config=CONFIG)
    committed, beat = asyncio.Event(), asyncio.Event()
    real_commit, real_heartbeat = store.commit, store.heartbeat

    async def commit(checkpoints: Sequence[Checkpoint]) -> list[bool]:
        outcome = await real_commit(checkpoints)
        if any(cp.release for cp in checkpoints):
            committed.set()
            await beat.wait()  # the heartbeat's answer comes before the execution ends
        return outcome

    async def heartbeat(
        worker_id: str, run_ids: Sequence[str], now: float, lease_ttl: float
    ) -> set[str]:
        held = await real_heartbeat(worker_id, run_ids, now, lease_ttl)
        beat.set()
        return held

    monkeypatch.setattr(store, "commit", commit)
    monkeypatch.setattr(store, "heartbeat", heartbeat)
    run = await engine.start("finishing")
    stop = asyncio.Event()
    worker = engine.worker(worker_id="w")
    task = asyncio.create_task(worker.run(stop))
    async with asyncio.timeout(10):
        await committed.wait()
        await clock.advance(CONFIG.heartbeat_interval)
        await beat.wait()
        await _stop(worker, stop, task)
    assert (await engine.get(run.id)).status is RunStatus.COMPLETED
    assert worker.stats.leases_lost == 0
    assert worker.stats.by_status.get("completed") == 1, "the execution ran to its end"


async def test_a_heartbeat_that_finds_the_run_taken_over_stops_the_execution(
    store: Store, make_engine: MakeEngine, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose lease ran out and that another worker claimed is a lost lease: the
    heartbeat stops the execution here."""
    flow = Flow("taken")
    entered, stopped = asyncio.Event(), asyncio.Event()

    @flow.step
    async def work(ctx: StepContext) -> None:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.set()
            raise

    engine = make_engine(flow, config=CONFIG)
    real_heartbeat = store.heartbeat

    async def heartbeat(
        worker_id: str, run_ids: Sequence[str], now: float, lease_ttl: float
    ) -> set[str]:
        if not stopped.is_set():  # the lease ran out unnoticed; another worker claims it
            later = now + lease_ttl + 1
            assert await store.claim_runs("thief", engine.registry.keys(), later, 1, 60.0)
        return await real_heartbeat(worker_id, run_ids, now, lease_ttl)

    monkeypatch.setattr(store, "heartbeat", heartbeat)
    run = await engine.start("taken")
    stop = asyncio.Event()
    worker = engine.worker(worker_id="w")
    task = asyncio.create_task(worker.run(stop))
    async with asyncio.timeout(10):
        await entered.wait()
        await clock.advance(CONFIG.heartbeat_interval)
        await stopped.wait()
        await _stop(worker, stop, task)
    assert worker.stats.leases_lost == 1
    assert (await store.get_run(run.id)).lease_owner == "thief"
