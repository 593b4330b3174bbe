"""After the pivot nothing is compensated, on every store: a parallel group whose join
fails, a hold that expires and a signal that times out all retry forward, then park the
run for an operator, whose retry runs the failed branches again and whose resolve goes on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import assert_gapless, settle
from tests.unit.test_saga import ONCE, Provider, run_saga, settle_until_waiting
from tripwright.engine import Engine, RetryPolicy, RunStatus, VirtualClock
from tripwright.flows import ALL, ANY, RACE, Saga, at_least
from tripwright.flows.saga import Join, branch

MakeEngine = Callable[..., Engine]
BRANCHES = ("car", "insurance", "lounge")


def extras_after_the_pivot(
    p: Provider, join: Join, *, forward: RetryPolicy = ONCE, **group: Any
) -> Saga:
    """A flight, the ticket (the pivot), a group of extras, then a notification."""
    saga = Saga("late_extras", default_retry=ONCE, forward_retry=forward)
    saga.step("flight", p.action("flight"), compensate=p.undo("flight"))
    saga.step("ticket", p.action("ticket"), compensate=p.undo("ticket"), pivot=True)
    saga.parallel(
        "extras",
        *(branch(n, p.action(n), compensate=p.undo(n)) for n in BRANCHES),
        join=join,
        **group,
    )
    saga.step("notify", p.action("notify"))
    return saga


def tries(p: Provider, name: str) -> list[str]:
    return [k for n, k in p.tried if n == name]


FAILED_JOINS = [
    pytest.param(ALL, {"car"}, id="all"),
    pytest.param(at_least(2), {"car", "lounge"}, id="at_least"),
    pytest.param(ANY, set(BRANCHES), id="any"),
    pytest.param(RACE, set(BRANCHES), id="race"),
]


@pytest.mark.parametrize(("join", "failing"), FAILED_JOINS)
async def test_a_join_that_fails_after_the_pivot_parks_the_run_and_compensates_nothing(
    make_engine: MakeEngine, clock: VirtualClock, join: Join, failing: set[str]
) -> None:
    """A group after the pivot whose join is not reached parks the run as
    needs_attention with the join's failure (each branch's error) journaled; nothing is
    compensated and the saga goes no further."""
    p = Provider()
    p.fail |= failing
    engine, run_id = await run_saga(make_engine, clock, extras_after_the_pivot(p, join))
    parked = await engine.get(run_id)
    assert parked.status is RunStatus.NEEDS_ATTENTION
    assert p.undone() == []
    assert "notify" not in p.done()
    attention = parked.context["saga"]["attention"]
    assert attention["step"] == "step:extras"
    assert attention["error"]["type"] == "JoinFailed"
    assert set(attention["error"]["branches"]) == failing
    journal = await engine.journal(run_id)
    assert_gapless(journal)
    assert "compensation" not in [e.kind for e in journal]
    parked_notes = [e.data for e in journal if e.kind == "note"]
    assert any(n["message"] == "needs_attention" for n in parked_notes)
    shown = await engine.describe(run_id)
    assert shown.position.at == ("extras",)
    assert shown.position.details["phase"] == "needs_attention"


@pytest.mark.parametrize(("join", "failing"), FAILED_JOINS)
async def test_an_operator_retry_runs_the_failed_branches_again_with_their_keys(
    make_engine: MakeEngine, clock: VirtualClock, join: Join, failing: set[str]
) -> None:
    """`saga.retry` re-runs only the branches that failed, with the keys they had; the
    branches that succeeded keep their results, and the saga completes forward."""
    p = Provider()
    p.fail |= failing
    engine, run_id = await run_saga(make_engine, clock, extras_after_the_pivot(p, join))
    first = {n: tries(p, n) for n in BRANCHES}
    p.fail.clear()
    await engine.send(run_id, "saga.retry")
    await settle(engine, engine.worker(), clock)
    run = await engine.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert p.done()[-1] == "notify"
    for name in BRANCHES:
        again = tries(p, name)[len(first[name]) :]
        if name in failing:
            assert again == first[name][-1:], f"{name} retried once, with its key"
        else:
            assert again == [], f"{name} succeeded already and is not run again"
    extras = run.result["results"]["extras"]
    if join is RACE:
        assert list(extras) == ["car"]
        assert sorted(p.undone()) == ["insurance", "lounge"]  # the race's losers only
    else:
        assert set(extras) == set(BRANCHES)
        assert p.undone() == []
    assert_gapless(await engine.journal(run_id))


async def test_run_control_retries_and_resolves_a_parked_join(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """`Engine.retry` (`tripwright runs retry`) of a run parked at a join runs its failed
    branch again, once however often it is asked; `Engine.resolve` completes it."""
    p = Provider()
    p.fail |= {"car", "lounge"}
    engine, run_id = await run_saga(make_engine, clock, extras_after_the_pivot(p, ALL))
    p.fail.discard("car")
    await engine.retry(run_id)
    await engine.retry(run_id)
    await settle(engine, engine.worker(), clock)
    parked = await engine.get(run_id)
    assert parked.status is RunStatus.NEEDS_ATTENTION
    assert len(tries(p, "car")) == 2
    assert len(tries(p, "lounge")) == 2
    assert set(parked.context["saga"]["attention"]["error"]["branches"]) == {"lounge"}
    await engine.resolve(run_id)
    await settle(engine, engine.worker(), clock)
    run = await engine.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert set(run.result["results"]["extras"]) == {"car", "insurance"}
    assert p.undone() == []


async def test_an_operator_resolve_completes_the_group_with_what_succeeded(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """`saga.resolve` treats the failed group as done by hand: the saga goes on after it,
    keeping the branches that succeeded, and nothing is retried or compensated."""
    p = Provider()
    p.fail.add("car")
    engine, run_id = await run_saga(make_engine, clock, extras_after_the_pivot(p, ALL))
    await engine.send(run_id, "saga.resolve")
    await settle(engine, engine.worker(), clock)
    run = await engine.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert p.done() == ["flight", "ticket", "insurance", "lounge", "notify"]
    assert p.undone() == []
    assert set(run.result["results"]["extras"]) == {"insurance", "lounge"}
    assert tries(p, "car") == [f"{run_id}:step:extras:0/car"]


async def test_a_failed_join_after_the_pivot_is_retried_forward_before_parking(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """The join is retried forward (``forward_retry``, durably): a branch that fails on
    the first try and succeeds on the next completes the saga without an operator."""
    p = Provider()
    p.flaky["car"] = 1
    forward = RetryPolicy(max_attempts=3, initial_interval=5.0, jitter=False)
    saga = extras_after_the_pivot(p, ALL, forward=forward)
    engine, run_id = await run_saga(make_engine, clock, saga)
    run = await engine.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert p.undone() == []
    assert tries(p, "car") == [f"{run_id}:step:extras:0/car"] * 2
    assert len(tries(p, "insurance")) == 1
    notes = [e.data for e in await engine.journal(run_id) if e.kind == "note"]
    retried = [n for n in notes if n["message"] == "join not reached: retrying forward"]
    assert [(n["step"], n["attempt"], n["retry_in"]) for n in retried] == [("extras", 1, 5.0)]


async def test_forward_retries_of_a_join_run_out_then_park(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A join that keeps failing is retried ``forward_retry.max_attempts`` times in all,
    then parked; an operator retry starts a fresh set of attempts."""
    p = Provider()
    p.fail.add("car")
    forward = RetryPolicy(max_attempts=3, initial_interval=1.0, jitter=False)
    engine, run_id = await run_saga(
        make_engine, clock, extras_after_the_pivot(p, ALL, forward=forward)
    )
    assert (await engine.get(run_id)).status is RunStatus.NEEDS_ATTENTION
    assert len(tries(p, "car")) == 3
    assert (await engine.get(run_id)).context["saga"]["attention"]["attempts"] == 3
    await engine.send(run_id, "saga.retry")
    await settle(engine, engine.worker(), clock)
    assert (await engine.get(run_id)).status is RunStatus.NEEDS_ATTENTION
    assert len(tries(p, "car")) == 6
    assert p.undone() == []


async def test_a_hold_that_expires_after_the_pivot_changes_nothing(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A hold whose deadline would pass while the pivot runs, or after it, neither
    compensates nor re-acquires: a failing group after it is parked as any other."""
    p = Provider()
    p.delays["ticket"] = 900.0  # the pivot outlasts the fare's 600 s hold
    p.fail.add("car")
    saga = Saga("late_hold", default_retry=ONCE, forward_retry=ONCE)
    saga.step("fare", p.action("fare"), compensate=p.undo("fare"), deadline=600)
    saga.step("room", p.action("room"), compensate=p.undo("room"), deadline=700.0)
    saga.step("ticket", p.action("ticket"), pivot=True)
    saga.parallel(
        "extras",
        branch("car", p.action("car"), compensate=p.undo("car")),
        branch("lounge", p.action("lounge"), compensate=p.undo("lounge")),
    )
    saga.wait("feedback", "rated")
    engine, run_id = await run_saga(make_engine, clock, saga)
    parked = await engine.get(run_id)
    assert parked.status is RunStatus.NEEDS_ATTENTION
    assert parked.context["saga"]["attention"]["step"] == "step:extras"
    assert p.undone() == []
    p.fail.clear()
    await engine.send(run_id, "saga.retry")
    worker = engine.worker()
    await settle_until_waiting(engine, worker, clock, run_id)
    await clock.advance(3600)
    await engine.send(run_id, "rated", 4)
    await settle(engine, worker, clock)
    done = await engine.get(run_id)
    assert done.status is RunStatus.COMPLETED
    assert p.undone() == []
    assert p.done() == ["fare", "room", "ticket", "lounge", "car"]


async def test_a_signal_timing_out_after_the_pivot_parks_even_with_an_expired_hold(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A post-pivot wait that times out after a pre-pivot hold's deadline has passed is
    parked for an operator; resolving it completes the saga, compensating nothing."""
    p = Provider()
    saga = Saga("late_wait", default_retry=ONCE)
    saga.step("fare", p.action("fare"), compensate=p.undo("fare"), deadline=600)
    saga.step("ticket", p.action("ticket"), pivot=True)
    saga.wait("feedback", "rated", timeout=1200)
    saga.step("thanks", p.action("thanks"))
    engine, run_id = await run_saga(make_engine, clock, saga)
    parked = await engine.get(run_id)
    assert parked.status is RunStatus.NEEDS_ATTENTION
    assert parked.context["saga"]["attention"]["step"] == "got:feedback"
    assert p.undone() == []
    await engine.send(run_id, "saga.resolve")
    await settle(engine, engine.worker(), clock)
    assert (await engine.get(run_id)).status is RunStatus.COMPLETED
    assert p.done() == ["fare", "ticket", "thanks"]
    assert p.undone() == []
