"""Durable sleeps, timers and events on every store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import assert_gapless, drive, kinds, settle
from tripwright.engine import (
    Complete,
    Engine,
    Flow,
    RunStatus,
    Sleep,
    StepContext,
    VirtualClock,
    WaitEvent,
)
from tripwright.engine.records import EventRecord
from tripwright.errors import InvalidRunStateError

MakeEngine = Callable[..., Engine]
#: Virtual times are absolute (about 1.8e9 s): compare offsets from the start with an
#: absolute tolerance; a relative one would allow half an hour.
TICK = 1e-3


def payment_flow(seen: list[str]) -> Flow:
    flow = Flow("payment")

    @flow.step
    async def start(ctx: StepContext) -> WaitEvent:
        ctx.set_timer("expiry", after=15 * 60, event="expired", payload={"why": "hold"})
        return WaitEvent(names=("paid", "expired"), then="decide")

    @flow.step
    async def decide(ctx: StepContext) -> Complete:
        assert ctx.event is not None
        seen.append(ctx.event.name)
        ctx.cancel_timer("expiry")
        return Complete(ctx.event.name)

    return flow


async def test_sleep_is_a_durable_timer(make_engine: MakeEngine, clock: VirtualClock) -> None:
    """A sleeping run holds no lease and wakes when its time comes, not before."""
    flow = Flow("nap")

    @flow.step
    async def doze(ctx: StepContext) -> Sleep:
        return Sleep(seconds=3600)

    @flow.step
    async def wake(ctx: StepContext) -> None:
        ctx.context["woke_at"] = ctx.now

    engine = make_engine(flow)
    run = await engine.start("nap")
    worker = engine.worker()
    await drive(worker, clock)
    waiting = await engine.get(run.id)
    assert waiting.status is RunStatus.WAITING
    assert waiting.lease_owner is None
    assert waiting.due_at is not None
    assert waiting.due_at - run.created_at == pytest.approx(3600, abs=TICK)
    await clock.advance(3599)
    await drive(worker, clock)
    assert (await engine.get(run.id)).status is RunStatus.WAITING
    await clock.advance(1)
    await drive(worker, clock)
    done = await engine.get(run.id)
    assert done.status is RunStatus.COMPLETED
    assert done.context["woke_at"] - run.created_at == pytest.approx(3600, abs=TICK)


async def test_timer_fires_as_an_event_when_nothing_else_comes(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A durable timer is delivered as an event at its time, and journaled as fired."""
    seen: list[str] = []
    engine = make_engine(payment_flow(seen))
    run = await engine.start("payment")
    await settle(engine, engine.worker(), clock)
    assert seen == ["expired"]
    journal = await engine.journal(run.id)
    assert_gapless(journal)
    fired = [e for e in journal if e.kind == "timer_fired"]
    assert fired[0].data["timer"] == "expiry"
    assert fired[0].data["payload"] == {"why": "hold"}
    assert fired[0].at - run.created_at == pytest.approx(900, abs=TICK)


async def test_event_beats_the_timer_and_the_timer_is_cancelled(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """An event that arrives first is delivered; the cancelled timer never fires."""
    seen: list[str] = []
    engine = make_engine(payment_flow(seen))
    run = await engine.start("payment")
    worker = engine.worker()
    await drive(worker, clock)
    await clock.advance(60)
    await engine.send(run.id, "paid", {"amount": "10.00"})
    await drive(worker, clock)
    assert seen == ["paid"]
    assert await engine.store.pending_events(run.id) == []
    await clock.advance(3600)
    await drive(worker, clock)
    assert seen == ["paid"]
    assert "timer_cancelled" in kinds(await engine.journal(run.id))


async def test_events_are_applied_once_each_in_arrival_order(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Events queued for a run are handed over one per wait, oldest first."""
    got: list[object] = []
    flow = Flow("inbox")

    @flow.step
    async def wait(ctx: StepContext) -> WaitEvent:
        return WaitEvent(then="take")

    @flow.step
    async def take(ctx: StepContext) -> WaitEvent | Complete:
        assert ctx.event is not None
        got.append(ctx.event.payload)
        return Complete(got) if len(got) == 3 else WaitEvent(then="take")

    engine = make_engine(flow)
    run = await engine.start("inbox")
    worker = engine.worker()
    for n in range(3):
        await engine.send(run.id, "item", n)
        await clock.advance(1)
    await engine.send(run.id, "item", 1, dedupe_key="k")
    await settle(engine, worker, clock)
    assert got == [0, 1, 2]
    journal = await engine.journal(run.id)
    received = [e.data["payload"] for e in journal if e.kind == "event_received"]
    assert received == [0, 1, 2]


async def test_a_run_that_read_every_queued_event_waits_without_reading_again(
    make_engine: MakeEngine, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events read ahead in one short batch are received in-process; once they are used up
    the run waits without asking the store again, and an event queued meanwhile still
    arrives, in order."""
    got: list[object] = []
    flow = Flow("reader")

    @flow.step
    async def wait(ctx: StepContext) -> WaitEvent:
        return WaitEvent(then="take")

    @flow.step
    async def take(ctx: StepContext) -> WaitEvent | Complete:
        assert ctx.event is not None
        got.append(ctx.event.payload)
        if ctx.event.payload == 0:
            await engine.send(run.id, "item", 3)  # queued after the run read ahead
        return Complete(got) if len(got) == 4 else WaitEvent(then="take")

    engine = make_engine(flow)
    run = await engine.start("reader")
    for n in range(3):
        await engine.send(run.id, "item", n)
    reads: list[int] = []
    read = engine.store.next_events

    async def counted(*args: Any, **kwargs: Any) -> list[EventRecord]:
        found = await read(*args, **kwargs)
        reads.append(len(found))
        return found

    monkeypatch.setattr(engine.store, "next_events", counted)
    await settle(engine, engine.worker(), clock)
    assert got == [0, 1, 2, 3]
    # One read ahead of the first wait, none once it was used up, one on the next claim.
    assert reads == [3, 1]
    journal = await engine.journal(run.id)
    assert_gapless(journal)
    assert [e.data["payload"] for e in journal if e.kind == "event_received"] == [0, 1, 2, 3]


async def test_send_dedupe_key_queues_one_event(make_engine: MakeEngine) -> None:
    """Sending twice with the same dedupe key queues the event once."""
    engine = make_engine(payment_flow([]))
    run = await engine.start("payment")
    first = await engine.send(run.id, "paid", 1, dedupe_key="cb-1")
    second = await engine.send(run.id, "paid", 2, dedupe_key="cb-1")
    assert first == second
    assert [e.payload for e in await engine.store.pending_events(run.id)] == [1]


async def test_wait_timeout_wakes_with_timed_out(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A wait with a timeout resumes with ctx.timed_out when no event came."""
    outcome: list[bool] = []
    flow = Flow("patience")

    @flow.step
    async def wait(ctx: StepContext) -> WaitEvent:
        return WaitEvent(names=("answer",), timeout=30, then="after")

    @flow.step
    async def after(ctx: StepContext) -> None:
        outcome.append(ctx.timed_out)

    engine = make_engine(flow)
    run = await engine.start("patience")
    worker = engine.worker()
    await drive(worker, clock)
    await engine.send(run.id, "noise")
    await drive(worker, clock)
    assert outcome == []
    await clock.advance(30)
    await drive(worker, clock)
    assert outcome == [True]
    assert "wait_timed_out" in kinds(await engine.journal(run.id))


async def test_events_to_finished_runs_are_refused(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Sending to a completed or cancelled run raises InvalidRunStateError."""
    engine = make_engine(payment_flow([]))
    run = await engine.start("payment")
    cancelled = await engine.cancel(run.id, "customer changed plans")
    assert cancelled.status is RunStatus.CANCELLED
    with pytest.raises(InvalidRunStateError, match="cancelled"):
        await engine.send(run.id, "paid")
    with pytest.raises(InvalidRunStateError):
        await engine.cancel(run.id)
    journal = await engine.journal(run.id)
    assert_gapless(journal)
    assert journal[-1].kind == "run_cancelled"
    assert await engine.store.pending_events(run.id) == []


async def test_outbox_messages_commit_with_the_step(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Messages published by a step are in the outbox exactly when its checkpoint is."""
    flow = Flow("announce")

    @flow.step
    async def publish(ctx: StepContext) -> None:
        ctx.publish("trips", "trip.confirmed", {"id": ctx.input}, subject=ctx.input)
        if ctx.attempt == 1:
            raise ConnectionError("lost before checkpoint")

    engine = make_engine(flow)
    await engine.start("announce", "T-1")
    await settle(engine, engine.worker(), clock)
    assert await engine.store.outbox_count() == 1
    assert await engine.store.outbox_count(published=False) == 1


async def test_a_run_can_wait_for_an_operator_as_needs_attention(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A wait marked for attention shows as needs_attention, is listed by that status, and
    resumes on the operator's event like any wait."""
    flow = Flow("escalating")

    @flow.step
    async def escalate(ctx: StepContext) -> WaitEvent:
        return WaitEvent(names=("operator.ok",), then="carry_on", attention=True)

    @flow.step
    async def carry_on(ctx: StepContext) -> Complete:
        assert ctx.event is not None
        return Complete(ctx.event.payload)

    engine = make_engine(flow)
    run = await engine.start("escalating")
    worker = engine.worker()
    await drive(worker, clock)
    assert (await engine.get(run.id)).status is RunStatus.NEEDS_ATTENTION
    assert [r.id for r in await engine.list_runs(status="needs_attention")] == [run.id]
    await engine.send(run.id, "operator.ok", "fixed by hand")
    await drive(worker, clock)
    done = await engine.get(run.id)
    assert done.status is RunStatus.COMPLETED
    assert done.result == "fixed by hand"


async def test_an_operator_retries_or_resolves_a_parked_run_through_run_control(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """`Engine.retry` and `Engine.resolve` send a needs_attention run the events its wait
    names for them; asking twice before a worker acts is asking once; a run that is not
    parked, or names no such event, is refused."""
    flow = Flow("parking")

    @flow.step
    async def park(ctx: StepContext) -> WaitEvent:
        names = ("op.again", "op.done", "op.other")
        return WaitEvent(names=names, then="decide", attention=True, retry="op.again")

    @flow.step
    async def decide(ctx: StepContext) -> Any:
        assert ctx.event is not None
        ctx.context["tries"] = ctx.context.get("tries", 0) + 1
        return WaitEvent(names=("op.done",), then="finish", attention=True, resolve="op.done")

    @flow.step
    async def finish(ctx: StepContext) -> Complete:
        return Complete(ctx.context["tries"])

    engine = make_engine(flow)
    run = await engine.start("parking")
    worker = engine.worker()
    with pytest.raises(InvalidRunStateError, match="can be resolved, not a pending one"):
        await engine.resolve(run.id)
    await drive(worker, clock)
    with pytest.raises(InvalidRunStateError, match="names no event to resolve it"):
        await engine.resolve(run.id)
    assert (await engine.retry(run.id)).status is RunStatus.NEEDS_ATTENTION
    await engine.retry(run.id)
    assert [e.name for e in await engine.store.pending_events(run.id)] == ["op.again"]
    await drive(worker, clock)
    with pytest.raises(InvalidRunStateError, match="names no event to retry it"):
        await engine.retry(run.id)
    await engine.resolve(run.id)
    await drive(worker, clock)
    done = await engine.get(run.id)
    assert done.status is RunStatus.COMPLETED
    assert done.result == 1
    with pytest.raises(InvalidRunStateError, match="only a failed run can be retried"):
        await engine.retry(run.id)


async def test_an_operator_event_must_be_an_awaited_name_of_an_attention_wait(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A wait naming a retry event it does not wait for (or without attention) is a
    definition error: the run fails instead of parking where no retry can reach it."""
    flow = Flow("misnamed")

    @flow.step
    async def park(ctx: StepContext) -> WaitEvent:
        return WaitEvent(names=("op.ok",), then="park", attention=True, retry="op.again")

    engine = make_engine(flow)
    run = await engine.start("misnamed")
    await settle(engine, engine.worker(), clock)
    failed = await engine.get(run.id)
    assert failed.status is RunStatus.FAILED
    assert "must be one of the awaited names" in str(failed.error)
