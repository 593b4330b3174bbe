"""Runs on every store: steps, journal, retries, failures, routing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import assert_gapless, drive, kinds, settle
from tripwright.engine import (
    Complete,
    Engine,
    Fail,
    Flow,
    Goto,
    RetryPolicy,
    RunStatus,
    StepContext,
    VirtualClock,
)
from tripwright.errors import (
    ContextNotSerializableError,
    FinalError,
    RunNotFoundError,
    UnknownFlowError,
)

MakeEngine = Callable[..., Engine]


def linear_flow(calls: list[tuple[str, str, int]]) -> Flow:
    flow = Flow("linear", version="1")

    @flow.step
    async def first(ctx: StepContext) -> None:
        calls.append((ctx.step, ctx.idempotency_key, ctx.attempt))
        ctx.context["first"] = ctx.input["n"] + 1

    @flow.step
    async def second(ctx: StepContext) -> None:
        calls.append((ctx.step, ctx.idempotency_key, ctx.attempt))
        ctx.context["second"] = ctx.context["first"] * 2

    @flow.step
    async def third(ctx: StepContext) -> Complete:
        calls.append((ctx.step, ctx.idempotency_key, ctx.attempt))
        return Complete({"total": ctx.context["second"]})

    return flow


async def test_linear_flow_completes_with_result_and_gapless_journal(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A linear flow runs its steps in order, keeps context and records a gapless journal."""
    calls: list[tuple[str, str, int]] = []
    engine = make_engine(linear_flow(calls))
    run = await engine.start("linear", {"n": 4})
    await drive(engine.worker(), clock)
    done = await engine.get(run.id)
    assert done.status is RunStatus.COMPLETED
    assert done.result == {"total": 10}
    assert done.context == {"first": 5, "second": 10}
    assert [c[0] for c in calls] == ["first", "second", "third"]
    journal = await engine.journal(run.id)
    assert_gapless(journal)
    assert kinds(journal) == [
        "run_created",
        *["step_started", "step_completed"] * 3,
        "run_completed",
    ]


async def test_idempotency_key_is_stable_across_retries(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Every attempt of a step sees the same idempotency key; attempts are journaled."""
    keys: list[tuple[str, int]] = []
    flow = Flow("flaky", default_retry=RetryPolicy(max_attempts=4, initial_interval=1.0))

    @flow.step
    async def call(ctx: StepContext) -> None:
        keys.append((ctx.idempotency_key, ctx.attempt))
        if ctx.attempt < 3:
            raise ConnectionError("provider down")

    engine = make_engine(flow)
    run = await engine.start("flaky")
    worker = engine.worker()
    await settle(engine, worker, clock)
    assert [a for _, a in keys] == [1, 2, 3]
    assert len({k for k, _ in keys}) == 1
    assert keys[0][0] == f"{run.id}:call:0"
    done = await engine.get(run.id)
    assert done.status is RunStatus.COMPLETED
    journal = await engine.journal(run.id)
    assert kinds(journal).count("attempt_failed") == 2
    failed = [e for e in journal if e.kind == "attempt_failed"]
    assert failed[0].data["error"] == {"type": "ConnectionError", "message": "provider down"}
    assert failed[0].data["retry_in"] >= 1.0


async def test_retry_waits_for_backoff_on_the_clock(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A failed attempt is retried only once its backoff delay has passed."""
    attempts: list[float] = []
    flow = Flow(
        "backoff",
        default_retry=RetryPolicy(max_attempts=2, initial_interval=30.0, jitter=False),
    )

    @flow.step
    async def call(ctx: StepContext) -> None:
        attempts.append(ctx.now)
        if ctx.attempt == 1:
            raise TimeoutError("slow")

    engine = make_engine(flow)
    run = await engine.start("backoff")
    worker = engine.worker()
    await drive(worker, clock)
    await drive(worker, clock)
    assert len(attempts) == 1
    await clock.advance(29.0)
    await drive(worker, clock)
    assert len(attempts) == 1
    await clock.advance(1.0)
    await drive(worker, clock)
    assert len(attempts) == 2
    assert attempts[1] - attempts[0] == pytest.approx(30.0)
    assert (await engine.get(run.id)).status is RunStatus.COMPLETED


async def test_exhausted_retries_fail_the_run_with_the_error(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """After the last attempt the run fails and records the step, error and attempts."""
    flow = Flow("doomed", default_retry=RetryPolicy(max_attempts=3, initial_interval=0.1))

    @flow.step
    async def call(ctx: StepContext) -> None:
        raise ValueError("no seats")

    engine = make_engine(flow)
    run = await engine.start("doomed")
    await settle(engine, engine.worker(), clock)
    done = await engine.get(run.id)
    assert done.status is RunStatus.FAILED
    assert done.error == {
        "type": "ValueError",
        "message": "no seats",
        "step": "call",
        "attempts": 3,
    }
    journal = await engine.journal(run.id)
    assert_gapless(journal)
    assert kinds(journal)[-2:] == ["step_failed", "run_failed"]


async def test_final_and_non_retryable_errors_are_not_retried(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """FinalError and errors listed as non-retryable fail at the first attempt."""
    seen: list[str] = []
    flow = Flow(
        "strict",
        default_retry=RetryPolicy(max_attempts=5, non_retryable=(PermissionError,)),
    )

    @flow.step
    async def call(ctx: StepContext) -> None:
        seen.append(ctx.input)
        if ctx.input == "final":
            raise FinalError("card declined")
        raise PermissionError("forbidden")

    engine = make_engine(flow)
    a = await engine.start("strict", "final")
    b = await engine.start("strict", "perm")
    await settle(engine, engine.worker(), clock)
    assert sorted(seen) == ["final", "perm"]
    assert (await engine.get(a.id)).status is RunStatus.FAILED
    assert (await engine.get(b.id)).status is RunStatus.FAILED


async def test_on_failure_routes_to_a_handler_step(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A step's final failure runs its on_failure step, which sees the failure."""
    seen: dict[str, Any] = {}
    flow = Flow("routed", default_retry=RetryPolicy(max_attempts=1))

    @flow.step(on_failure="undo")
    async def book(ctx: StepContext) -> None:
        raise RuntimeError("sold out")

    @flow.step
    async def undo(ctx: StepContext) -> Fail:
        seen.update(ctx.failure or {})
        return Fail("compensated", {"step": (ctx.failure or {}).get("step")})

    engine = make_engine(flow)
    run = await engine.start("routed")
    await settle(engine, engine.worker(), clock)
    done = await engine.get(run.id)
    assert seen["step"] == "book"
    assert seen["error"]["message"] == "sold out"
    assert done.status is RunStatus.FAILED
    assert done.error == {"type": "Fail", "message": "compensated", "details": {"step": "book"}}


async def test_goto_loops_get_a_new_key_per_visit(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A step visited again via Goto gets a fresh idempotency key per completed visit."""
    keys: list[str] = []
    flow = Flow("loop")

    @flow.step
    async def poll(ctx: StepContext) -> Goto | Complete:
        keys.append(ctx.idempotency_key)
        ctx.context["n"] = ctx.context.get("n", 0) + 1
        return Goto("poll") if ctx.context["n"] < 3 else Complete(ctx.context["n"])

    engine = make_engine(flow)
    run = await engine.start("loop")
    await drive(engine.worker(), clock)
    assert keys == [f"{run.id}:poll:0", f"{run.id}:poll:1", f"{run.id}:poll:2"]
    assert (await engine.get(run.id)).result == 3


async def test_step_timeout_is_an_attempt_failure(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A step over its timeout is cancelled, journaled as StepTimeoutError and retried."""
    flow = Flow("slow", default_retry=RetryPolicy(max_attempts=2, initial_interval=0.1))

    @flow.step(timeout=5.0)
    async def call(ctx: StepContext) -> None:
        if ctx.attempt == 1:
            await ctx.clock.sleep(60.0)

    engine = make_engine(flow)
    run = await engine.start("slow")
    await settle(engine, engine.worker(), clock)
    journal = await engine.journal(run.id)
    failed = [e for e in journal if e.kind == "attempt_failed"]
    assert failed[0].data["error"]["type"] == "StepTimeoutError"
    assert (await engine.get(run.id)).status is RunStatus.COMPLETED


async def test_same_idempotency_key_returns_the_same_run(make_engine: MakeEngine) -> None:
    """Starting twice with one idempotency key (same owner) creates one run."""
    engine = make_engine(linear_flow([]))
    a = await engine.start("linear", {"n": 1}, owner="acme", idempotency_key="req-1")
    b = await engine.start("linear", {"n": 2}, owner="acme", idempotency_key="req-1")
    c = await engine.start("linear", {"n": 3}, owner="other", idempotency_key="req-1")
    assert a.id == b.id
    assert b.input == {"n": 1}
    assert c.id != a.id


async def test_bad_input_is_reported_clearly(make_engine: MakeEngine) -> None:
    """Unknown flows, versions, runs and non-JSON contexts raise named errors."""
    engine = make_engine(linear_flow([]))
    with pytest.raises(UnknownFlowError, match="unknown flow 'nope'"):
        await engine.start("nope")
    with pytest.raises(UnknownFlowError, match="no version '9'"):
        await engine.start("linear", version="9")
    with pytest.raises(ContextNotSerializableError, match=r"\$\.when"):
        await engine.start("linear", {"n": 1}, context={"when": object()})
    with pytest.raises(RunNotFoundError):
        await engine.get("missing")
    assert await engine.list_runs() == []


async def test_non_serialisable_context_fails_the_step_not_the_store(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A step that leaves non-JSON in its context fails (without retries); others go on."""
    flow = Flow("leaky", default_retry=RetryPolicy(max_attempts=5))

    @flow.step
    async def call(ctx: StepContext) -> None:
        if ctx.input == "bad":
            ctx.context["conn"] = object()

    engine = make_engine(flow)
    bad = await engine.start("leaky", "bad")
    good = await engine.start("leaky", "good")
    await settle(engine, engine.worker(), clock)
    failed = await engine.get(bad.id)
    assert failed.status is RunStatus.FAILED
    assert failed.error is not None
    assert failed.error["type"] == "ContextNotSerializableError"
    assert failed.error["attempts"] == 1
    assert (await engine.get(good.id)).status is RunStatus.COMPLETED


async def test_runs_are_listed_by_flow_status_and_correlation(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Runs can be listed by flow, status and correlation id; journals by correlation."""
    engine = make_engine(linear_flow([]))
    a = await engine.start("linear", {"n": 1}, correlation_id="trip-1")
    b = await engine.start("linear", {"n": 2}, correlation_id="trip-1")
    await engine.start("linear", {"n": 3}, correlation_id="trip-2")
    assert {r.id for r in await engine.list_runs(correlation_id="trip-1")} == {a.id, b.id}
    assert len(await engine.list_runs(status="pending")) == 3
    await drive(engine.worker(), clock)
    assert len(await engine.list_runs(flow="linear", status="completed")) == 3
    entries = await engine.journal_by_correlation("trip-1")
    assert {e.run_id for e in entries} == {a.id, b.id}
    assert all(e.correlation_id == "trip-1" for e in entries)
