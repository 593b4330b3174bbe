"""The sequence (saga) model on every store: order, compensation, pivot, parallel joins."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import assert_gapless, settle
from tripwright.engine import Engine, RetryPolicy, RunStatus, VirtualClock
from tripwright.errors import DefinitionError
from tripwright.flows import ALL, ANY, RACE, Saga, SagaContext, at_least
from tripwright.flows.saga import branch

MakeEngine = Callable[..., Engine]
ONCE = RetryPolicy(max_attempts=1)


class Provider:
    """Records every action and compensation with its key; fails on demand."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        #: Every attempt of an action, failed or not: (name, key).
        self.tried: list[tuple[str, str]] = []
        self.fail: set[str] = set()
        #: Actions that fail this many more times, then succeed.
        self.flaky: dict[str, int] = {}
        self.fail_undo: dict[str, int] = {}
        self.delays: dict[str, float] = {}
        #: Actions whose provider never answers (until the call is stopped).
        self.hanging: set[str] = set()

    def action(self, name: str) -> Callable[[SagaContext], Any]:
        async def act(ctx: SagaContext) -> str:
            self.tried.append((name, ctx.idempotency_key))
            if name in self.delays:
                await ctx.clock.sleep(self.delays[name])
            if name in self.hanging:
                await asyncio.Event().wait()
            if name in self.fail:
                raise RuntimeError(f"{name} refused")
            if self.flaky.get(name, 0) > 0:
                self.flaky[name] -= 1
                raise ConnectionError(f"{name} unreachable")
            self.calls.append(("do", name, ctx.idempotency_key))
            return f"{name}-ok"

        return act

    def undo(self, name: str) -> Callable[[SagaContext], Any]:
        async def compensate(ctx: SagaContext) -> None:
            if self.fail_undo.get(name, 0) > 0:
                self.fail_undo[name] -= 1
                raise ConnectionError(f"undo {name} unreachable")
            self.calls.append(("undo", name, ctx.forward_key or ""))

        return compensate

    def done(self) -> list[str]:
        return [n for kind, n, _ in self.calls if kind == "do"]

    def undone(self) -> list[str]:
        return [n for kind, n, _ in self.calls if kind == "undo"]


def trip_saga(p: Provider, *, pivot: bool = True) -> Saga:
    saga = Saga(
        "trip",
        default_retry=ONCE,
        compensation_retry=RetryPolicy(max_attempts=3, initial_interval=0.1),
        forward_retry=RetryPolicy(max_attempts=2, initial_interval=0.1),
    )
    saga.step("flight", p.action("flight"), compensate=p.undo("flight"))
    saga.step("hotel", p.action("hotel"), compensate=p.undo("hotel"))
    saga.step("charge", p.action("charge"), compensate=p.undo("charge"))
    saga.step("ticket", p.action("ticket"), pivot=pivot)
    saga.step("notify", p.action("notify"))
    return saga


async def run_saga(make_engine: MakeEngine, clock: VirtualClock, saga: Saga) -> tuple[Engine, str]:
    engine = make_engine(saga.to_flow())
    run = await engine.start(saga.name, {"trip": "T-1"})
    await settle(engine, engine.worker(), clock)
    return engine, run.id


async def test_a_saga_runs_its_steps_in_order(make_engine: MakeEngine, clock: VirtualClock) -> None:
    """A saga with no failure runs each step once, in order, and completes with results."""
    p = Provider()
    engine, run_id = await run_saga(make_engine, clock, trip_saga(p))
    run = await engine.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert p.done() == ["flight", "hotel", "charge", "ticket", "notify"]
    assert run.result["results"]["ticket"] == "ticket-ok"
    assert_gapless(await engine.journal(run_id))


async def test_failure_before_the_pivot_compensates_in_reverse(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A step that fails before the pivot undoes the completed steps, last first, with
    each action's own key, and the run fails."""
    p = Provider()
    p.fail.add("charge")
    engine, run_id = await run_saga(make_engine, clock, trip_saga(p))
    run = await engine.get(run_id)
    assert run.status is RunStatus.FAILED
    assert p.undone() == ["hotel", "flight"]
    forward = {n: k for kind, n, k in p.calls if kind == "do"}
    assert [k for kind, _, k in p.calls if kind == "undo"] == [forward["hotel"], forward["flight"]]
    journal = await engine.journal(run_id)
    assert [e.data["step"] for e in journal if e.kind == "compensation"] == ["hotel", "flight"]
    assert run.error is not None
    assert run.error["details"]["failure"]["step"] == "step:charge"


async def test_failure_after_the_pivot_is_not_compensated_but_parked(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """After the pivot a failing step is retried forward, then waits for an operator;
    nothing is compensated, and `saga.retry` runs the step again."""
    p = Provider()
    p.fail.add("notify")
    saga = trip_saga(p)
    engine, run_id = await run_saga(make_engine, clock, saga)
    run = await engine.get(run_id)
    assert run.status is RunStatus.NEEDS_ATTENTION
    assert p.undone() == []
    assert run.context["saga"]["attention"]["step"] == "step:notify"
    p.fail.clear()
    await engine.send(run_id, "saga.retry")
    await settle(engine, engine.worker(), clock)
    assert (await engine.get(run_id)).status is RunStatus.COMPLETED
    assert p.done()[-1] == "notify"


async def test_a_failing_compensation_is_retried_then_parked_never_dropped(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A compensation that keeps failing parks the run; an operator retry finishes the
    remaining compensations in order."""
    p = Provider()
    p.fail.add("charge")
    p.fail_undo["hotel"] = 5
    engine, run_id = await run_saga(make_engine, clock, trip_saga(p))
    parked = await engine.get(run_id)
    assert parked.status is RunStatus.NEEDS_ATTENTION
    assert parked.context["saga"]["attention"]["step"] == "saga:compensate"
    assert p.undone() == []
    p.fail_undo.clear()
    await engine.send(run_id, "saga.retry")
    await settle(engine, engine.worker(), clock)
    assert (await engine.get(run_id)).status is RunStatus.FAILED
    assert p.undone() == ["hotel", "flight"]


async def test_operator_can_resolve_a_stuck_compensation(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """`saga.resolve` marks the stuck compensation as handled and continues with the rest."""
    p = Provider()
    p.fail.add("charge")
    p.fail_undo["hotel"] = 100
    engine, run_id = await run_saga(make_engine, clock, trip_saga(p))
    await engine.send(run_id, "saga.resolve")
    await settle(engine, engine.worker(), clock)
    run = await engine.get(run_id)
    assert run.status is RunStatus.FAILED
    assert p.undone() == ["flight"]
    assert run.context["saga"]["compensated"] == ["hotel", "flight"]


@pytest.mark.parametrize(
    ("join", "failing", "joined"),
    [
        (ALL, {"car"}, False),
        (ALL, set(), True),
        (ANY, {"car", "insurance"}, True),
        (ANY, {"car", "insurance", "lounge"}, False),
        (at_least(2), {"car"}, True),
        (at_least(2), {"car", "lounge"}, False),
    ],
)
async def test_parallel_groups_join_by_policy(
    make_engine: MakeEngine,
    clock: VirtualClock,
    join: Any,
    failing: set[str],
    joined: bool,
) -> None:
    """A group joins when its policy is met; otherwise its succeeded branches and the
    steps before it are compensated."""
    p = Provider()
    p.fail |= failing
    saga = Saga("extras", default_retry=ONCE)
    saga.step("flight", p.action("flight"), compensate=p.undo("flight"))
    saga.parallel(
        "extras",
        *(branch(n, p.action(n), compensate=p.undo(n)) for n in ("car", "insurance", "lounge")),
        join=join,
    )
    engine, run_id = await run_saga(make_engine, clock, saga)
    run = await engine.get(run_id)
    succeeded = {"car", "insurance", "lounge"} - failing
    if joined:
        assert run.status is RunStatus.COMPLETED
        assert set(run.result["results"]["extras"]) == succeeded
        assert p.undone() == []
    else:
        assert run.status is RunStatus.FAILED
        assert set(p.undone()[:-1]) == succeeded
        assert p.undone()[-1] == "flight"


async def test_branches_get_their_own_stable_keys(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Each branch of a group gets a distinct key derived from the group's key."""
    p = Provider()
    saga = Saga("keys", default_retry=ONCE)
    saga.parallel("g", branch("a", p.action("a")), branch("b", p.action("b")))
    _, run_id = await run_saga(make_engine, clock, saga)
    keys = {n: k for _, n, k in p.calls}
    assert keys == {"a": f"{run_id}:step:g:0/a", "b": f"{run_id}:step:g:0/b"}


async def test_a_race_keeps_the_first_success_and_compensates_the_losers(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """In a race the first branch to succeed wins; the others are stopped or undone."""
    p = Provider()
    p.delays = {"slow_hotel": 50.0, "mid_hotel": 5.0}
    saga = Saga("race", default_retry=ONCE)
    saga.parallel(
        "hotel",
        *(
            branch(n, p.action(n), compensate=p.undo(n))
            for n in ("slow_hotel", "fast_hotel", "mid_hotel")
        ),
        join=RACE,
    )
    engine, run_id = await run_saga(make_engine, clock, saga)
    run = await engine.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.result["results"]["hotel"] == {"fast_hotel": "fast_hotel-ok"}
    assert sorted(p.undone()) == ["mid_hotel", "slow_hotel"]


async def test_a_timed_out_step_is_compensated_as_in_doubt(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A step whose last attempt timed out may have taken effect: it is compensated first."""
    p = Provider()
    p.delays = {"hotel": 100.0}
    saga = Saga("doubt", default_retry=ONCE)
    saga.step("flight", p.action("flight"), compensate=p.undo("flight"))
    saga.step("hotel", p.action("hotel"), compensate=p.undo("hotel"), timeout=10.0)
    engine, run_id = await run_saga(make_engine, clock, saga)
    assert (await engine.get(run_id)).status is RunStatus.FAILED
    assert p.undone() == ["hotel", "flight"]


def test_validation_flags_uncompensated_steps_before_the_pivot() -> None:
    """Side-effecting steps before the pivot without compensation are warned about;
    readonly ones and post-pivot ones are not; two pivots are an error."""
    p = Provider()
    saga = Saga("v")
    saga.step("quote", p.action("quote"), readonly=True)
    saga.step("hold", p.action("hold"))
    saga.step("ticket", p.action("ticket"), pivot=True)
    saga.step("mail", p.action("mail"))
    assert [str(x) for x in saga.validate()] == [
        "warning: hold: side-effecting step before the pivot has no compensation "
        "(mark it readonly=True if it changes nothing)"
    ]
    saga.step("again", p.action("again"), pivot=True)
    with pytest.raises(DefinitionError, match="one pivot"):
        saga.to_flow()
    with pytest.raises(DefinitionError, match="duplicate step name"):
        saga.step("hold", p.action("hold"))


def test_mermaid_diagram_shows_order_groups_compensations_and_pivot() -> None:
    """The diagram lists steps in order, groups as subgraphs, dashed undo edges, the pivot."""
    p = Provider()
    saga = trip_saga(p)
    saga.parallel("extras", branch("car", p.action("car"), compensate=p.undo("car")))
    text = saga.to_mermaid()
    assert text.startswith("flowchart TD")
    assert "flight -.-> flight_undo" in text
    assert 'ticket{{"ticket ⟂ pivot"}}' in text
    assert 'subgraph extras["extras (join: all)"]' in text
    assert text.index("start --> flight") < text.index("flight --> hotel")


async def test_saga_survives_a_crash_between_steps(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A worker that dies mid-saga leaves it to another, which completes it without
    repeating a completed step's key."""

    class Crash(BaseException):
        pass

    p = Provider()
    armed = {"hotel": True}
    saga = Saga("crashy", default_retry=ONCE)
    saga.step("flight", p.action("flight"), compensate=p.undo("flight"))

    async def hotel(ctx: SagaContext) -> str:
        p.calls.append(("do", "hotel", ctx.idempotency_key))
        if armed.pop("hotel", False):
            raise Crash()
        return "ok"

    saga.step("hotel", hotel, compensate=p.undo("hotel"))
    engine = make_engine(saga.to_flow())
    run = await engine.start("crashy")
    first = engine.worker(worker_id="a")
    with pytest.raises(Crash):
        await first.run_until_idle()
    await asyncio.sleep(0)
    await settle(engine, engine.worker(worker_id="b"), clock)
    assert (await engine.get(run.id)).status is RunStatus.COMPLETED
    assert [n for _, n, _ in p.calls] == ["flight", "hotel", "hotel"]
    assert len({k for _, n, k in p.calls if n == "hotel"}) == 1


async def test_a_saga_waits_for_a_signal_and_keeps_its_payload(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A wait step parks the saga until its event arrives; the payload is its result."""
    p = Provider()
    saga = Saga("pay", default_retry=ONCE)
    saga.step("hold", p.action("hold"), compensate=p.undo("hold"))
    saga.wait("payment", "payment.received", timeout=900)
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine = make_engine(saga.to_flow())
    run_id = (await engine.start("pay")).id
    await settle_until_waiting(engine, engine.worker(), clock, run_id)
    await clock.advance(60)
    await engine.send(run_id, "payment.received", {"amount": "120.00"})
    await settle(engine, engine.worker(), clock)
    done = await engine.get(run_id)
    assert done.status is RunStatus.COMPLETED
    assert done.result["results"]["payment"] == {"amount": "120.00"}
    assert p.done() == ["hold", "ticket"]


async def test_a_signal_that_never_comes_compensates_before_the_pivot(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A wait that times out before the pivot undoes what the saga holds."""
    p = Provider()
    saga = Saga("pay", default_retry=ONCE)
    saga.step("hold", p.action("hold"), compensate=p.undo("hold"))
    saga.wait("payment", "payment.received", timeout=900)
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine, run_id = await run_saga(make_engine, clock, saga)
    failed = await engine.get(run_id)
    assert failed.status is RunStatus.FAILED
    assert p.undone() == ["hold"]
    assert "no 'payment.received' within 900s" in str(failed.error)


async def test_an_expired_hold_compensates_the_saga(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A hold whose deadline passes before the pivot makes the saga compensate, even
    while it waits for a signal; the deadline is a durable timer."""
    p = Provider()
    saga = Saga("fare", default_retry=ONCE)
    saga.step("fare", p.action("fare"), compensate=p.undo("fare"), deadline=600)
    saga.wait("approval", "approved")
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine, run_id = await run_saga(make_engine, clock, saga)
    failed = await engine.get(run_id)
    assert failed.status is RunStatus.FAILED
    assert failed.error is not None
    assert failed.error["details"]["failure"]["error"]["type"] == "DeadlineExpired"
    assert p.undone() == ["fare"]
    assert p.done() == ["fare"]


async def test_reaching_the_pivot_in_time_cancels_the_deadline(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A saga that passes its pivot before a hold expires completes; the timer is gone."""
    p = Provider()
    saga = Saga("fare", default_retry=ONCE)
    saga.step("fare", p.action("fare"), compensate=p.undo("fare"), deadline=600)
    saga.wait("approval", "approved")
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine = make_engine(saga.to_flow())
    run = await engine.start("fare")
    worker = engine.worker()
    await settle_until_waiting(engine, worker, clock, run.id)
    await engine.send(run.id, "approved")
    await settle(engine, worker, clock)
    assert (await engine.get(run.id)).status is RunStatus.COMPLETED
    assert p.undone() == []
    assert await engine.store.pending_events(run.id) == []


async def settle_until_waiting(
    engine: Engine, worker: Any, clock: VirtualClock, run_id: str
) -> None:
    """Run the worker (without moving time) until the run waits."""
    for _ in range(10):
        await worker.run_until_idle()
        if (await engine.get(run_id)).status is RunStatus.WAITING:
            return
    raise AssertionError("the run never waited")


def test_a_deadline_shorter_than_the_step_timeout_is_an_error() -> None:
    """A hold that expires before its step may even finish is refused."""
    p = Provider()
    saga = Saga("bad")
    saga.step("fare", p.action("fare"), compensate=p.undo("fare"), timeout=60, deadline=30)
    with pytest.raises(DefinitionError, match="deadline 30s is not longer"):
        saga.to_flow()


async def test_a_post_pivot_wait_that_times_out_is_parked_and_can_wait_again(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """After the pivot a wait that times out parks the run; `saga.retry` waits again."""
    p = Provider()
    saga = Saga("late", default_retry=ONCE)
    saga.step("ticket", p.action("ticket"), pivot=True)
    saga.wait("feedback", "rated", timeout=60)
    engine, run_id = await run_saga(make_engine, clock, saga)
    parked = await engine.get(run_id)
    assert parked.status is RunStatus.NEEDS_ATTENTION
    assert parked.context["saga"]["attention"]["step"] == "got:feedback"
    await engine.send(run_id, "saga.retry")
    worker = engine.worker()
    await worker.run_until_idle()
    await engine.send(run_id, "rated", 5)
    await settle(engine, worker, clock)
    done = await engine.get(run_id)
    assert done.status is RunStatus.COMPLETED
    assert done.result["results"]["feedback"] == 5


async def test_cancelling_a_waiting_saga_compensates_then_cancels(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A cancel of a saga waiting for a signal undoes what it holds and ends `cancelled`."""
    p = Provider()
    saga = Saga("pay", default_retry=ONCE)
    saga.step("flight", p.action("flight"), compensate=p.undo("flight"))
    saga.step("hotel", p.action("hotel"), compensate=p.undo("hotel"))
    saga.wait("payment", "paid")
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine = make_engine(saga.to_flow())
    run_id = (await engine.start("pay")).id
    worker = engine.worker()
    await settle_until_waiting(engine, worker, clock, run_id)
    requested = await engine.cancel(run_id, "customer changed plans")
    assert requested.status is RunStatus.RUNNING
    await settle(engine, worker, clock)
    done = await engine.get(run_id)
    assert done.status is RunStatus.CANCELLED
    assert done.error == {"type": "cancelled", "message": "customer changed plans"}
    assert p.undone() == ["hotel", "flight"]
    journal = await engine.journal(run_id)
    assert_gapless(journal)
    assert [e.kind for e in journal][-1] == "run_cancelled"
    assert "cancel_requested" in [e.kind for e in journal]


async def test_cancelling_mid_step_also_undoes_the_step_in_flight(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A step executing when the cancel arrives is in doubt: it is compensated too, with
    its own key, and its late checkpoint is refused."""
    p = Provider()
    entered, release = asyncio.Event(), asyncio.Event()
    saga = Saga("busy", default_retry=ONCE)
    saga.step("flight", p.action("flight"), compensate=p.undo("flight"))

    async def slow_hotel(ctx: SagaContext) -> str:
        entered.set()
        await release.wait()
        p.calls.append(("do", "hotel", ctx.idempotency_key))
        return "ok"

    saga.step("hotel", slow_hotel, compensate=p.undo("hotel"))
    engine = make_engine(saga.to_flow())
    run_id = (await engine.start("busy")).id
    worker = engine.worker()
    task = asyncio.create_task(worker.run_until_idle())
    await entered.wait()
    await engine.cancel(run_id)
    release.set()
    await task
    await settle(engine, worker, clock)
    assert (await engine.get(run_id)).status is RunStatus.CANCELLED
    assert p.undone() == ["hotel", "flight"]
    hotel_key = next(k for kind, n, k in p.calls if kind == "do" and n == "hotel")
    assert ("undo", "hotel", hotel_key) in p.calls


async def test_a_cancel_after_the_pivot_asks_an_operator(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Past the point of no return a cancel compensates nothing and parks the run."""
    p = Provider()
    saga = Saga("late", default_retry=ONCE)
    saga.step("ticket", p.action("ticket"), pivot=True)
    saga.wait("feedback", "rated")
    engine = make_engine(saga.to_flow())
    run_id = (await engine.start("late")).id
    await settle_until_waiting(engine, engine.worker(), clock, run_id)
    await engine.cancel(run_id)
    await settle(engine, engine.worker(), clock)
    parked = await engine.get(run_id)
    assert parked.status is RunStatus.NEEDS_ATTENTION
    assert p.undone() == []
    assert "after the pivot" in str(parked.context["saga"]["attention"])


async def test_a_plain_flow_is_cancelled_at_once(make_engine: MakeEngine) -> None:
    """A flow without an on_cancel step is cancelled immediately, as is any run when
    clean-up is declined."""
    p = Provider()
    saga = Saga("quick", default_retry=ONCE)
    saga.step("flight", p.action("flight"), compensate=p.undo("flight"))
    engine = make_engine(saga.to_flow())
    run_id = (await engine.start("quick")).id
    cancelled = await engine.cancel(run_id, clean_up=False)
    assert cancelled.status is RunStatus.CANCELLED


def race_with_a_stuck_loser(p: Provider, name: str, **group: Any) -> Saga:
    """A flight, then a race of two hotels: ``lodge`` wins at once, ``inn`` is stopped
    mid-call and its compensation keeps failing."""
    # A call that never returns (not a delay on the virtual clock, which the test's
    # driver may move on before the race has stopped it).
    p.hanging.add("inn")
    p.fail_undo["inn"] = 100
    saga = Saga(
        name,
        default_retry=ONCE,
        compensation_retry=RetryPolicy(max_attempts=2, initial_interval=0.1),
    )
    saga.step("flight", p.action("flight"), compensate=p.undo("flight"))
    saga.parallel(
        "hotel",
        branch("lodge", p.action("lodge"), compensate=p.undo("lodge")),
        branch("inn", p.action("inn"), compensate=p.undo("inn")),
        join=RACE,
        **group,
    )
    return saga


async def test_operator_can_resolve_a_race_whose_loser_cannot_be_undone(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A race whose losing branch's compensation keeps failing asks an operator;
    `saga.resolve` completes the group with its winner and the saga goes on after it."""
    p = Provider()
    saga = race_with_a_stuck_loser(p, "race_stuck")
    saga.step("charge", p.action("charge"), compensate=p.undo("charge"))
    engine, run_id = await run_saga(make_engine, clock, saga)
    parked = await engine.get(run_id)
    assert parked.status is RunStatus.NEEDS_ATTENTION
    assert parked.context["saga"]["attention"]["step"] == "race:hotel"
    await engine.send(run_id, "saga.resolve")
    await settle(engine, engine.worker(), clock)
    run = await engine.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.result["results"]["hotel"] == {"lodge": "lodge-ok"}
    assert p.done() == ["flight", "lodge", "charge"]
    assert p.undone() == []
    assert [d["name"] for d in run.context["saga"]["done"]] == ["flight", "hotel", "charge"]
    journal = await engine.journal(run_id)
    assert_gapless(journal)
    notes = [e.data for e in journal if e.kind == "note"]
    assert {
        "message": "race losers left to the operator",
        "step": "hotel",
        "branches": ["inn"],
    } in notes


async def test_a_resolved_race_holds_what_its_winner_holds(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Resolving a stuck race completes the group as a settled race would: its deadline
    starts, so the hold still expires and compensates the saga if nothing comes in time."""
    p = Provider()
    saga = race_with_a_stuck_loser(p, "race_hold", deadline=100.0)
    saga.wait("paid", "payment.received")
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine, run_id = await run_saga(make_engine, clock, saga)
    assert (await engine.get(run_id)).context["saga"]["attention"]["step"] == "race:hotel"
    resolved_at = clock.now()
    await engine.send(run_id, "saga.resolve")
    await settle(engine, engine.worker(), clock)
    run = await engine.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error["details"]["failure"]["error"]["type"] == "DeadlineExpired"
    assert clock.now() - resolved_at >= 100.0
    assert p.done() == ["flight", "lodge"]
    assert p.undone() == ["lodge", "flight"]
