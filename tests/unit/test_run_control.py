"""Run control on every store: pause, resume, retry, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.helpers import assert_gapless, drive, kinds, settle
from tripwright.engine import (
    Engine,
    Flow,
    RetryPolicy,
    RunStatus,
    StepContext,
    VirtualClock,
    WaitEvent,
)
from tripwright.errors import InvalidRunStateError

MakeEngine = Callable[..., Engine]


def two_steps(calls: list[str], fail: set[str]) -> Flow:
    flow = Flow("ctl", default_retry=RetryPolicy(max_attempts=1))

    @flow.step
    async def first(ctx: StepContext) -> None:
        calls.append("first")

    @flow.step
    async def second(ctx: StepContext) -> None:
        calls.append("second")
        if "second" in fail:
            raise RuntimeError("provider down")

    return flow


async def test_a_paused_run_is_not_taken_until_resumed(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A paused run stays put, keeps receiving events, and resumes where it was."""
    calls: list[str] = []
    engine = make_engine(two_steps(calls, set()))
    run = await engine.start("ctl")
    paused = await engine.pause(run.id, "investigating")
    assert paused.status is RunStatus.PAUSED
    await settle(engine, engine.worker(), clock)
    assert calls == []
    resumed = await engine.resume(run.id)
    assert resumed.status is RunStatus.PENDING
    await settle(engine, engine.worker(), clock)
    assert calls == ["first", "second"]
    journal = await engine.journal(run.id)
    assert_gapless(journal)
    assert kinds(journal)[1:3] == ["run_paused", "run_resumed"]


async def test_pausing_a_waiting_run_keeps_its_events(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Events sent while a waiting run is paused are delivered after it resumes."""
    got: list[str] = []
    flow = Flow("waiter")

    @flow.step
    async def wait(ctx: StepContext) -> WaitEvent:
        return WaitEvent(names=("go",), then="go")

    @flow.step
    async def go(ctx: StepContext) -> None:
        assert ctx.event is not None
        got.append(ctx.event.name)

    engine = make_engine(flow)
    run = await engine.start("waiter")
    worker = engine.worker()
    await drive(worker, clock)
    await engine.pause(run.id)
    await engine.send(run.id, "go")
    await settle(engine, worker, clock)
    assert got == []
    await engine.resume(run.id)
    await settle(engine, worker, clock)
    assert got == ["go"]
    assert (await engine.get(run.id)).status is RunStatus.COMPLETED


async def test_retry_runs_the_failed_step_again(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Retrying a failed run runs its failed step again with fresh attempts, same key."""
    calls: list[str] = []
    fail = {"second"}
    engine = make_engine(two_steps(calls, fail))
    run = await engine.start("ctl")
    await settle(engine, engine.worker(), clock)
    assert (await engine.get(run.id)).status is RunStatus.FAILED
    fail.clear()
    retried = await engine.retry(run.id)
    assert retried.status is RunStatus.RUNNING
    assert retried.error is None
    await settle(engine, engine.worker(), clock)
    assert (await engine.get(run.id)).status is RunStatus.COMPLETED
    assert calls == ["first", "second", "second"]
    assert "run_retried" in kinds(await engine.journal(run.id))


async def test_control_refuses_what_makes_no_sense(make_engine: MakeEngine) -> None:
    """Resuming an unpaused run, retrying an unfailed one or pausing a finished one fails."""
    engine = make_engine(two_steps([], set()))
    run = await engine.start("ctl")
    with pytest.raises(InvalidRunStateError, match="cannot resume a pending run"):
        await engine.resume(run.id)
    with pytest.raises(InvalidRunStateError, match="only a failed run"):
        await engine.retry(run.id)
    await engine.cancel(run.id)
    with pytest.raises(InvalidRunStateError, match="cannot pause a cancelled run"):
        await engine.pause(run.id)


async def test_pause_fences_out_the_worker_mid_step(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A step in flight when its run is paused cannot checkpoint; after resume it runs
    again with the same idempotency key."""
    keys: list[str] = []
    entered = asyncio.Event()
    release = asyncio.Event()
    flow = Flow("fenced")

    @flow.step
    async def book(ctx: StepContext) -> None:
        keys.append(ctx.idempotency_key)
        entered.set()
        await release.wait()

    engine = make_engine(flow)
    run = await engine.start("fenced")
    worker = engine.worker()
    task = asyncio.create_task(worker.run_until_idle())
    await entered.wait()
    await engine.pause(run.id)
    release.set()
    await task
    assert (await engine.get(run.id)).status is RunStatus.PAUSED
    await engine.resume(run.id)
    await settle(engine, worker, clock)
    assert (await engine.get(run.id)).status is RunStatus.COMPLETED
    assert keys == [f"{run.id}:book:0", f"{run.id}:book:0"]
