"""Bad outcomes, bad error messages, refused and ambiguous commits, on every store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from tests.helpers import assert_gapless, drive, kinds
from tripwright.engine import (
    Checkpoint,
    Complete,
    Engine,
    Flow,
    Goto,
    Outcome,
    RetryPolicy,
    RunStatus,
    Sleep,
    StepContext,
    VirtualClock,
    WaitEvent,
)
from tripwright.engine.store import Store
from tripwright.errors import StoreDataError, StoreError

MakeEngine = Callable[..., Engine]


async def _rounds(engine: Engine, clock: VirtualClock, n: int = 3) -> None:
    """Run a worker, then let every lease expire, ``n`` times."""
    worker = engine.worker()
    for _ in range(n):
        async with asyncio.timeout(10):
            await worker.run_until_idle()
        await clock.advance(engine.config.lease_ttl + 1)


@pytest.mark.parametrize(
    "outcome",
    [
        pytest.param(Sleep(seconds=float("nan"), then="b"), id="sleep-nan"),
        pytest.param(Sleep(seconds=float("inf"), then="b"), id="sleep-inf"),
        pytest.param(WaitEvent(("go",), timeout=float("inf"), then="b"), id="wait-inf"),
        pytest.param(WaitEvent(("go\x00",), then="b"), id="wait-name-nul"),
        pytest.param(WaitEvent(("a|b",), then="b"), id="wait-name-bar"),
        pytest.param(WaitEvent(("go\ud800",), then="b"), id="wait-name-surrogate"),
        pytest.param(Sleep(seconds="soon", then="b"), id="sleep-not-a-number"),  # type: ignore[arg-type]
    ],
)
async def test_bad_outcome_parameters_fail_the_run_once(
    make_engine: MakeEngine, clock: VirtualClock, outcome: Outcome
) -> None:
    """An outcome the engine cannot store fails the run after one execution."""
    calls: list[str] = []
    flow = Flow("bad.outcome")

    @flow.step
    async def a(ctx: StepContext) -> Outcome:
        calls.append("a")
        return outcome

    @flow.step
    async def b(ctx: StepContext) -> Complete:
        return Complete(None)

    engine = make_engine(flow)
    run = await engine.start("bad.outcome")
    await _rounds(engine, clock)
    assert calls == ["a"]
    assert (await engine.get(run.id)).status is RunStatus.FAILED


async def test_error_messages_with_nul_fail_only_their_run(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """An exception whose message holds NUL fails its run once; its batch commits."""
    calls: list[str] = []
    flow = Flow("nul.error")

    @flow.step
    async def a(ctx: StepContext) -> None:
        await asyncio.sleep(0)
        if ctx.input == "bad":
            calls.append("bad")
            raise ValueError("upstream said: a\x00b")

    engine = make_engine(flow)
    runs = await engine.start_many("nul.error", ["good"] * 20 + ["bad"] + ["good"] * 20)
    await _rounds(engine, clock, 4)
    for run in runs:
        after = await engine.get(run.id)
        expected = RunStatus.COMPLETED if run.input == "good" else RunStatus.FAILED
        assert after.status is expected
    assert calls == ["bad"] * 3  # the default policy's three attempts, once each


async def test_a_refused_checkpoint_fails_the_run_as_it_was_before_the_step(
    make_engine: MakeEngine, clock: VirtualClock, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the database refuses a step's checkpoint, the run fails at that step with its
    context as before it, the next step never runs, and a retry runs the step again with
    the same key."""
    calls: list[tuple[str, str]] = []
    refuse = {"on": True}
    flow = Flow("refused")

    @flow.step
    async def a(ctx: StepContext) -> Goto:
        calls.append(("a", ctx.idempotency_key))
        ctx.context["a"] = "done"
        return Goto("b")

    @flow.step
    async def b(ctx: StepContext) -> Complete:
        calls.append(("b", ctx.idempotency_key))
        return Complete(ctx.context)

    real = store.commit

    async def picky(checkpoints: Sequence[Checkpoint]) -> list[bool]:
        if refuse["on"] and any(cp.step == "b" and not cp.rejection for cp in checkpoints):
            raise StoreDataError("value refused by the database")
        return await real(checkpoints)

    monkeypatch.setattr(store, "commit", picky)
    engine = make_engine(flow)
    run = await engine.start("refused", context={"seed": 1})
    await _rounds(engine, clock, 2)
    failed = await engine.get(run.id)
    assert failed.status is RunStatus.FAILED
    assert failed.step == "a"
    assert failed.context == {"seed": 1}
    assert failed.error is not None
    assert failed.error["type"] == "StoreDataError"
    assert [c[0] for c in calls] == ["a"]
    journal = await engine.journal(run.id)
    assert_gapless(journal)
    assert kinds(journal)[-1] == "run_failed"
    refuse["on"] = False
    await engine.retry(run.id)
    await _rounds(engine, clock, 1)
    done = await engine.get(run.id)
    assert done.status is RunStatus.COMPLETED
    assert done.result == {"seed": 1, "a": "done"}
    assert calls[1] == calls[0]


async def test_an_ambiguous_commit_is_recognised_not_repeated(
    make_engine: MakeEngine, clock: VirtualClock, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits that succeed but report a lost connection are recognised as done: each
    step runs once and the journal stays gapless."""
    calls: list[str] = []
    flow = Flow("ambiguous")

    @flow.step
    async def a(ctx: StepContext) -> Goto:
        calls.append("a")
        return Goto("b")

    @flow.step
    async def b(ctx: StepContext) -> WaitEvent:
        calls.append("b")
        return WaitEvent(("go",), timeout=5, then="c")

    @flow.step
    async def c(ctx: StepContext) -> Complete:
        calls.append("c")
        return Complete(ctx.timed_out)

    real = store.commit
    seen = {"n": 0}

    async def lossy(checkpoints: Sequence[Checkpoint]) -> list[bool]:
        outcome = await real(checkpoints)
        seen["n"] += 1
        if seen["n"] <= 4:
            raise StoreError("connection lost after COMMIT")
        return outcome

    monkeypatch.setattr(store, "commit", lossy)
    engine = make_engine(flow)
    run = await engine.start("ambiguous")
    worker = engine.worker()
    for _ in range(4):
        async with asyncio.timeout(20):
            await drive(worker, clock)
        await clock.advance(6)
    after = await engine.get(run.id)
    assert_gapless(await engine.journal(run.id))
    assert calls == ["a", "b", "c"]
    assert after.status is RunStatus.COMPLETED
    assert after.result is True


async def test_retry_of_a_failed_handler_gives_it_the_failure_again(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A failure handler that itself failed sees the same ctx.failure when retried."""
    seen: list[object] = []
    fixed = {"on": False}
    flow = Flow("handler.retry", default_retry=RetryPolicy(max_attempts=1))

    @flow.step(on_failure="undo")
    async def book(ctx: StepContext) -> None:
        raise ValueError("boom")

    @flow.step
    async def undo(ctx: StepContext) -> Complete:
        seen.append(ctx.failure)
        if not fixed["on"]:
            raise RuntimeError("undo broke")
        return Complete(ctx.failure)

    engine = make_engine(flow)
    run = await engine.start("handler.retry")
    await _rounds(engine, clock, 1)
    failed = await engine.get(run.id)
    assert failed.status is RunStatus.FAILED
    assert failed.step == "undo"
    fixed["on"] = True
    await engine.retry(run.id)
    await _rounds(engine, clock, 1)
    assert seen[0] is not None
    assert seen[1] == seen[0]
    assert (await engine.get(run.id)).status is RunStatus.COMPLETED
