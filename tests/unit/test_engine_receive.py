"""A step receiving the events already queued behind its own, on every store."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.helpers import assert_gapless, kinds, settle
from tripwright.engine import (
    Complete,
    Engine,
    Flow,
    RunStatus,
    StepContext,
    VirtualClock,
    WaitEvent,
)
from tripwright.errors import ConfigurationError

MakeEngine = Callable[..., Engine]


def batching_flow(got: list[list[object]], *, take: int, total: int) -> Flow:
    """Waits for events; each step receives up to ``take`` of those queued behind its own."""
    flow = Flow("batcher")

    @flow.step
    async def wait(ctx: StepContext) -> WaitEvent:
        return WaitEvent(then="handle")

    @flow.step
    async def handle(ctx: StepContext) -> WaitEvent | Complete:
        assert ctx.event is not None
        batch = [ctx.event.payload]
        for record in ctx.queued[:take]:
            ctx.receive(record)
            batch.append(record.payload)
        got.append(batch)
        done = sum(len(b) for b in got) == total
        return Complete(None) if done else WaitEvent(then="handle")

    return flow


async def test_queued_events_received_in_a_step_are_consumed_with_it_once_each(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A step receives the events queued behind its own, in order; each is journaled as
    received in that step, consumed with its checkpoint, and never handed over again."""
    got: list[list[object]] = []
    engine = make_engine(batching_flow(got, take=2, total=7))
    run = await engine.start("batcher")
    for n in range(7):
        await engine.send(run.id, "item", n)
    await settle(engine, engine.worker(), clock)
    assert got == [[0, 1, 2], [3, 4, 5], [6]]
    done = await engine.get(run.id)
    assert done.status is RunStatus.COMPLETED
    journal = await engine.journal(run.id)
    assert_gapless(journal)
    assert [e.data["payload"] for e in journal if e.kind == "event_received"] == list(range(7))
    # Received entries sit inside their step: between its start and its completion.
    second = kinds(journal)[kinds(journal).index("step_completed", 4) + 1 :]
    assert second[:5] == [
        "event_received",
        "step_started",
        "event_received",
        "event_received",
        "step_completed",
    ]
    assert await engine.store.pending_events(run.id) == []


async def test_events_are_received_in_queue_order_and_not_after_a_timer(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Receiving out of order, or after the step set a timer, is refused (the step fails
    and its events stay queued)."""
    errors: list[str] = []
    flow = Flow("picky")

    @flow.step
    async def wait(ctx: StepContext) -> WaitEvent:
        return WaitEvent(then="handle")

    @flow.step
    async def handle(ctx: StepContext) -> Complete:
        with pytest.raises(ConfigurationError, match="order") as out_of_order:
            ctx.receive(ctx.queued[1])
        ctx.set_timer("later", after=60)
        with pytest.raises(ConfigurationError, match="timer") as after_timer:
            ctx.receive(ctx.queued[0])
        errors.extend(str(e.value) for e in (out_of_order, after_timer))
        return Complete(None)

    engine = make_engine(flow)
    run = await engine.start("picky")
    for n in range(3):
        await engine.send(run.id, "item", n)
    await settle(engine, engine.worker(), clock)
    assert len(errors) == 2
    done = await engine.get(run.id)
    assert done.status is RunStatus.COMPLETED
    # Only the step's own event was consumed.
    pending = await engine.store.pending_events(run.id)
    assert [e.payload for e in pending if e.kind == "event"] == [1, 2]
