"""Leases, fencing, takeover after a crash, and group commit, on every store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from tests.helpers import assert_gapless, drive
from tripwright.engine import (
    Checkpoint,
    Engine,
    EngineConfig,
    Flow,
    RunStatus,
    StepContext,
    VirtualClock,
)
from tripwright.engine.store import Store
from tripwright.errors import LeaseLostError

MakeEngine = Callable[..., Engine]
CONFIG = EngineConfig(lease_ttl=10.0, heartbeat_interval=3.0, poll_interval=0.01)


class Crash(BaseException):
    """Stands for the process dying mid-step."""


async def test_a_claimed_run_is_not_handed_to_another_worker(
    store: Store, make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """While a lease is live no other worker can claim the run; after expiry one can."""
    flow = Flow("held")
    flow.add_step("s", _noop)
    engine = make_engine(flow)
    run = await engine.start("held")
    keys = engine.registry.keys()
    first = await store.claim_runs("w1", keys, clock.now(), 10, 10.0)
    assert [r.id for r in first] == [run.id]
    assert await store.claim_runs("w2", keys, clock.now(), 10, 10.0) == []
    await clock.advance(10.5)
    second = await store.claim_runs("w2", keys, clock.now(), 10, 10.0)
    assert [r.id for r in second] == [run.id]
    assert second[0].lease_epoch == first[0].lease_epoch + 1


async def test_a_stale_worker_cannot_commit(
    store: Store, make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A checkpoint fenced by an older lease epoch is refused and leaves no trace."""
    flow = Flow("fenced")
    flow.add_step("s", _noop)
    engine = make_engine(flow)
    run = await engine.start("fenced")
    keys = engine.registry.keys()
    [old] = await store.claim_runs("w1", keys, clock.now(), 1, 5.0)
    await clock.advance(6)
    [new] = await store.claim_runs("w2", keys, clock.now(), 1, 5.0)

    def checkpoint(owner: str, epoch: int) -> Checkpoint:
        return Checkpoint(
            run_id=run.id,
            lease_owner=owner,
            lease_epoch=epoch,
            status=RunStatus.COMPLETED,
            step="s",
            state="{}",
            context='{"by":"' + owner + '"}',
            now=clock.now(),
            lease_expires_at=None,
            release=True,
        )

    assert await store.commit(
        [checkpoint("w1", old.lease_epoch), checkpoint("w2", new.lease_epoch)]
    ) == [False, True]
    done = await store.get_run(run.id)
    assert done.context == {"by": "w2"}
    assert await store.commit([checkpoint("w1", old.lease_epoch)]) == [False]


async def test_crashed_worker_runs_resume_elsewhere_with_the_same_key(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Runs of a worker that dies mid-step are resumed by another after lease expiry,
    re-executing the interrupted step with the same idempotency key."""
    calls: list[tuple[str, str, str]] = []
    crash_once = {"armed": True}
    flow = Flow("fragile")

    @flow.step
    async def one(ctx: StepContext) -> None:
        calls.append(("one", ctx.idempotency_key, ctx.run_id))

    @flow.step
    async def two(ctx: StepContext) -> None:
        calls.append(("two", ctx.idempotency_key, ctx.run_id))
        if crash_once["armed"]:
            crash_once["armed"] = False
            raise Crash()

    engine = make_engine(flow, config=CONFIG)
    runs = [await engine.start("fragile") for _ in range(5)]
    first = engine.worker(worker_id="first")
    with contextlib.suppress(Crash):
        await drive(first, clock)
    second = engine.worker(worker_id="second")
    await drive(second, clock)
    unfinished = [r for r in runs if (await engine.get(r.id)).status is not RunStatus.COMPLETED]
    assert unfinished, "the crash should have left runs behind"
    await clock.advance(CONFIG.lease_ttl + 1)
    await drive(second, clock)
    for run in runs:
        assert (await engine.get(run.id)).status is RunStatus.COMPLETED
        assert_gapless(await engine.journal(run.id))
        keys = {k for step, k, r in calls if r == run.id and step == "two"}
        assert keys == {f"{run.id}:two:0"}


async def test_heartbeats_keep_long_steps_leased(
    make_engine: MakeEngine, clock: VirtualClock, store: Store
) -> None:
    """A step longer than the lease TTL keeps its lease through heartbeats."""
    flow = Flow("long")
    gate = asyncio.Event()

    @flow.step
    async def work(ctx: StepContext) -> None:
        await gate.wait()

    engine = make_engine(flow, config=CONFIG)
    run = await engine.start("long")
    stop = asyncio.Event()
    worker = engine.worker(worker_id="w")
    task = asyncio.create_task(worker.run(stop))
    for _ in range(200):
        await asyncio.sleep(0.005)
        if worker.active_runs:
            break
    for _ in range(10):
        await clock.advance(CONFIG.heartbeat_interval)
        await asyncio.sleep(0.02)
    assert clock.now() - run.created_at > CONFIG.lease_ttl * 2
    assert await store.claim_runs("thief", engine.registry.keys(), clock.now(), 1, 5.0) == []
    gate.set()
    for _ in range(200):
        await asyncio.sleep(0.005)
        if (await engine.get(run.id)).status is RunStatus.COMPLETED:
            break
    stop.set()
    await task
    assert (await engine.get(run.id)).status is RunStatus.COMPLETED


async def test_cancel_fences_out_the_executing_worker(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Cancelling a run mid-step refuses the worker's checkpoint; the run stays cancelled."""
    flow = Flow("cancellable")
    entered = asyncio.Event()
    release = asyncio.Event()

    @flow.step
    async def work(ctx: StepContext) -> None:
        entered.set()
        await release.wait()

    @flow.step
    async def after(ctx: StepContext) -> None:
        raise AssertionError("must not run after cancel")

    engine = make_engine(flow, config=CONFIG)
    run = await engine.start("cancellable")
    worker = engine.worker()
    task = asyncio.create_task(worker.run_until_idle())
    await entered.wait()
    await engine.cancel(run.id, "customer request")
    release.set()
    await task
    done = await engine.get(run.id)
    assert done.status is RunStatus.CANCELLED
    assert worker.stats.leases_lost == 1
    assert_gapless(await engine.journal(run.id))


async def test_group_commit_shares_transactions_between_runs(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """With many runs in flight, checkpoints are grouped: fewer transactions than steps."""
    flow = Flow("busy")
    for name in ("a", "b", "c", "d", "e"):
        flow.add_step(name, _yielding)
    engine = make_engine(flow)
    await engine.start_many("busy", list(range(64)))
    worker = engine.worker()
    await drive(worker, clock)
    counts = await engine.store.count_runs()
    assert counts == {"completed": 64}
    assert worker.committer.checkpoints == 64 * 5
    assert worker.committer.transactions < worker.committer.checkpoints / 4


async def test_graceful_shutdown_hands_leases_back(
    make_engine: MakeEngine, clock: VirtualClock, store: Store
) -> None:
    """A worker stopped mid-step releases its leases so another can start at once."""
    flow = Flow("slowpoke")

    @flow.step
    async def work(ctx: StepContext) -> None:
        await asyncio.sleep(3600)

    engine = make_engine(flow, config=CONFIG.with_(shutdown_grace=0.05))
    run = await engine.start("slowpoke")
    stop = asyncio.Event()
    worker = engine.worker(worker_id="leaving")
    task = asyncio.create_task(worker.run(stop))
    for _ in range(200):
        await asyncio.sleep(0.005)
        if worker.active_runs:
            break
    stop.set()
    await task
    after = await store.get_run(run.id)
    assert after.lease_owner is None
    assert [r.id for r in await store.claim_runs("next", ["slowpoke@1"], clock.now(), 1, 5)] == [
        run.id
    ]


async def _noop(ctx: StepContext) -> None:
    return None


async def _yielding(ctx: StepContext) -> None:
    await asyncio.sleep(0)


def test_lease_lost_error_is_a_runtime_error() -> None:
    """LeaseLostError can be caught as RuntimeError."""
    assert issubclass(LeaseLostError, RuntimeError)
