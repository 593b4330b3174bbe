"""Child runs on every store: started in a parent's checkpoint, cancelled by it, and
reported back to it when they end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.helpers import assert_gapless, kinds, settle
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
    WaitEvent,
)
from tripwright.engine.flow import Cancelled

MakeEngine = Callable[..., Engine]


def child_flow(calls: list[str]) -> Flow:
    """A child that waits for ``go`` (then completes or fails), cleaning up on cancel."""
    flow = Flow("child", default_retry=RetryPolicy(max_attempts=1), on_cancel="undo")

    @flow.step
    async def hold(ctx: StepContext) -> WaitEvent:
        calls.append(f"hold:{ctx.input}")
        return WaitEvent(names=("go",), then="finish")

    @flow.step
    async def finish(ctx: StepContext) -> Complete | Fail:
        assert ctx.event is not None
        if ctx.event.payload == "fail":
            return Fail("no seats", {"left": 0})
        return Complete({"booked": ctx.input})

    @flow.step
    async def undo(ctx: StepContext) -> Cancelled:
        calls.append("undo")
        return Cancelled("released")

    return flow


def parent_flow(child: Flow, *, cancel: bool = False, starts: int = 1) -> Flow:
    """A parent that starts ``child`` (``starts`` times under one id), then waits for it
    to end (or cancels it when told to)."""
    flow = Flow("parent", default_retry=RetryPolicy(max_attempts=1))

    @flow.step
    async def start(ctx: StepContext) -> Goto | WaitEvent:
        ctx.start_child(
            child, "LHR-JFK", run_id=f"{ctx.run_id}.book", on_end="booked", data={"k": 1}
        )
        ctx.context["starts"] = ctx.context.get("starts", 0) + 1
        if ctx.context["starts"] < starts:
            return Goto("start")
        return WaitEvent(names=("booked", "abort"), then="ended")

    @flow.step
    async def ended(ctx: StepContext) -> Complete | WaitEvent:
        assert ctx.event is not None
        if ctx.event.name == "abort":
            ctx.cancel_child(f"{ctx.run_id}.book", "trip cancelled", flow=child if cancel else None)
            return WaitEvent(names=("booked",), then="ended")
        return Complete(ctx.event.payload)

    return flow


async def run_parent(
    make_engine: MakeEngine, clock: VirtualClock, calls: list[str], **options: Any
) -> tuple[Engine, str]:
    child = child_flow(calls)
    engine = make_engine(parent_flow(child, **options), child)
    run = await engine.start("parent", run_id="trip-1")
    await settle(engine, engine.worker(), clock)
    return engine, run.id


async def test_a_child_started_by_a_step_reports_its_result_to_the_parent(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """The child exists once the parent's step commits, and its result reaches the parent."""
    calls: list[str] = []
    engine, parent_id = await run_parent(make_engine, clock, calls)
    child = await engine.get("trip-1.book")
    assert (child.status, child.correlation_id) == (RunStatus.WAITING, "trip-1")
    await engine.send(child.id, "go", "ok")
    await settle(engine, engine.worker(), clock)
    parent = await engine.get(parent_id)
    expected = {
        "child": "trip-1.book",
        "status": "completed",
        "result": {"booked": "LHR-JFK"},
        "error": None,
        "data": {"k": 1},
    }
    assert (RunStatus.COMPLETED, expected) == (parent.status, parent.result)
    journal = await engine.journal(parent_id)
    assert_gapless(journal)
    assert "child_started" in kinds(journal)


async def test_a_child_started_again_under_its_id_exists_once(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Asking for the same child id in later checkpoints creates no second child."""
    calls: list[str] = []
    engine, _ = await run_parent(make_engine, clock, calls, starts=3)
    children = await engine.list_runs(flow="child")
    assert ([r.id for r in children], calls) == (["trip-1.book"], ["hold:LHR-JFK"])


async def test_a_failed_child_reports_its_error(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A child that fails sends its parent the failure."""
    calls: list[str] = []
    engine, parent_id = await run_parent(make_engine, clock, calls)
    await engine.send("trip-1.book", "go", "fail")
    await settle(engine, engine.worker(), clock)
    parent = await engine.get(parent_id)
    assert (parent.result["status"], parent.result["error"]["message"]) == ("failed", "no seats")


async def test_a_parent_cancels_its_child_with_clean_up(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A cancel in the parent's checkpoint runs the child's on_cancel step; the parent
    then hears that the child was cancelled."""
    calls: list[str] = []
    engine, parent_id = await run_parent(make_engine, clock, calls, cancel=True)
    await engine.send(parent_id, "abort")
    await settle(engine, engine.worker(), clock)
    child = await engine.get("trip-1.book")
    parent = await engine.get(parent_id)
    assert (child.status, calls) == (RunStatus.CANCELLED, ["hold:LHR-JFK", "undo"])
    assert (parent.result["status"], parent.status) == ("cancelled", RunStatus.COMPLETED)
    assert "cancel_requested" in kinds(await engine.journal(child.id))


async def test_a_parent_cancels_a_child_without_clean_up_at_once(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Without an on_cancel step the child is cancelled in the parent's own checkpoint."""
    calls: list[str] = []
    engine, parent_id = await run_parent(make_engine, clock, calls)
    await engine.send(parent_id, "abort")
    await settle(engine, engine.worker(), clock)
    child = await engine.get("trip-1.book")
    parent = await engine.get(parent_id)
    assert (child.status, calls) == (RunStatus.CANCELLED, ["hold:LHR-JFK"])
    assert parent.result["status"] == "cancelled"


async def test_an_operator_cancel_of_a_child_reaches_the_parent(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A child cancelled from outside tells its parent, once."""
    calls: list[str] = []
    engine, parent_id = await run_parent(make_engine, clock, calls)
    await engine.cancel("trip-1.book", "operator", clean_up=False)
    await settle(engine, engine.worker(), clock)
    parent = await engine.get(parent_id)
    assert (parent.result["status"], parent.result["error"]["message"]) == ("cancelled", "operator")


async def test_a_child_ending_after_its_parent_sends_nothing(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """The end of a child whose parent has ended is dropped, and the child still ends."""
    calls: list[str] = []
    engine, parent_id = await run_parent(make_engine, clock, calls)
    await engine.cancel(parent_id, "gone", clean_up=False)
    await engine.send("trip-1.book", "go", "ok")
    await settle(engine, engine.worker(), clock)
    child = await engine.get("trip-1.book")
    assert (
        child.status,
        await engine.store.pending_events(parent_id),
    ) == (RunStatus.COMPLETED, [])
