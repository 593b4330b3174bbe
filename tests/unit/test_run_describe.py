"""Run control's query on every store: status, step, position, context, next timer."""

from __future__ import annotations

from collections.abc import Callable

from tests.helpers import drive
from tripwright.engine import (
    Engine,
    Flow,
    Position,
    RunRecord,
    RunStatus,
    StepContext,
    TimerInfo,
    VirtualClock,
    WaitEvent,
)

MakeEngine = Callable[..., Engine]


def holding_flow(position: Callable[[RunRecord], Position | None] | None = None) -> Flow:
    flow = Flow("holding", position=position)

    @flow.step
    async def hold(ctx: StepContext) -> WaitEvent:
        ctx.context["held"] = "seat-1"
        ctx.set_timer("fare-expiry", after=900)
        ctx.set_timer("reminder", after=300, event="remind")
        return WaitEvent(names=("paid", "fare-expiry"), then="settle")

    @flow.step
    async def settle(ctx: StepContext) -> None:
        ctx.cancel_timer("fare-expiry")
        ctx.cancel_timer("reminder")

    return flow


async def test_describe_shows_status_step_context_wait_and_next_timer(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A waiting run is described with its step, context, the events it waits for and the
    earliest of its pending timers (name, time, event)."""
    engine = make_engine(holding_flow())
    run = await engine.start("holding", correlation_id="trip-7")
    started = clock.now()
    await drive(engine.worker(), clock)
    summary = await engine.describe(run.id)
    assert summary.status == RunStatus.WAITING.value
    assert summary.step == "hold"
    assert summary.position == Position("engine", ("hold",))
    assert summary.context == {"held": "seat-1"}
    assert summary.waiting_for == ("paid", "fare-expiry")
    assert summary.next_timer == TimerInfo("reminder", started + 300, "remind")
    assert summary.correlation_id == "trip-7"
    assert summary.to_json()["next_timer"] == {
        "name": "reminder",
        "at": started + 300,
        "event": "remind",
    }


async def test_describe_shows_no_timer_once_they_are_cancelled(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A finished run that cancelled its timers has no next timer and waits for nothing."""
    engine = make_engine(holding_flow())
    run = await engine.start("holding")
    worker = engine.worker()
    await drive(worker, clock)
    await engine.send(run.id, "paid")
    await drive(worker, clock)
    summary = await engine.describe(run.id)
    assert (summary.status, summary.next_timer, summary.waiting_for) == (
        RunStatus.COMPLETED.value,
        None,
        None,
    )


async def test_a_model_describes_its_position_through_the_flow_hook(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A flow's position hook turns the run into the model's own position."""

    def position(run: RunRecord) -> Position:
        return Position("toy", ("held", str(run.context.get("held"))), {"status": run.status})

    engine = make_engine(holding_flow(position))
    run = await engine.start("holding")
    await drive(engine.worker(), clock)
    summary = await engine.describe(run.id)
    assert summary.position == Position("toy", ("held", "seat-1"), {"status": "waiting"})
    assert summary.position.to_json() == {
        "model": "toy",
        "at": ["held", "seat-1"],
        "details": {"status": "waiting"},
    }


async def test_describe_without_the_definition_falls_back_to_the_engine_step(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """An engine that does not know the run's flow still describes it by its step."""
    engine = make_engine(holding_flow(lambda run: Position("toy", ("x",))))
    run = await engine.start("holding")
    await drive(engine.worker(), clock)
    stranger = Engine(engine.store, [], clock=clock)
    assert (await stranger.describe(run.id)).position == Position("engine", ("hold",))
