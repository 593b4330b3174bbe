"""Saga holds on every store: deadlines that re-acquire or compensate, final pivots, and
what run control shows of a saga."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import assert_gapless, drive, settle
from tests.unit.test_saga import ONCE, Provider, run_saga, settle_until_waiting
from tripwright.engine import Engine, Position, RunStatus, VirtualClock
from tripwright.errors import DefinitionError
from tripwright.flows import Saga, SagaContext
from tripwright.flows.saga import branch

MakeEngine = Callable[..., Engine]


def key(run_id: str, step: str, visit: int) -> str:
    return f"{run_id}:step:{step}:{visit}"


def hold_fare(saga: Saga, p: Provider, **options: Any) -> None:
    """A fare hold of 600 s that re-acquires when it expires (unless told otherwise)."""
    options = {"deadline": 600, "on_expiry": "reacquire", **options}
    saga.step("fare", p.action("fare"), compensate=p.undo("fare"), **options)


def undos(p: Provider) -> list[tuple[str, str]]:
    return [(name, k) for kind, name, k in p.calls if kind == "undo"]


def dos(p: Provider) -> list[tuple[str, str]]:
    return [(name, k) for kind, name, k in p.calls if kind == "do"]


async def test_an_expired_hold_is_released_and_reacquired_then_compensated_past_the_limit(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Each expiry before the pivot releases the hold with the key it was taken with and
    takes it again with a new key; after ``max_reacquires`` the next expiry compensates."""
    p = Provider()
    saga = Saga("fare", default_retry=ONCE)
    hold_fare(saga, p, max_reacquires=2)
    saga.wait("approval", "approved")
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine, run_id = await run_saga(make_engine, clock, saga)
    failed = await engine.get(run_id)
    assert failed.status is RunStatus.FAILED
    assert failed.error is not None
    assert failed.error["details"]["failure"]["error"] == {
        "type": "DeadlineExpired",
        "message": "the hold of fare expired (re-acquired 2 times already)",
    }
    keys = [key(run_id, "fare", visit) for visit in range(3)]
    assert dos(p) == [("fare", k) for k in keys]
    assert undos(p) == [("fare", k) for k in keys]
    journal = await engine.journal(run_id)
    assert_gapless(journal)
    assert [e.data.get("reason") for e in journal if e.kind == "compensation"] == [
        "hold expired",
        "hold expired",
        None,
    ]
    renewed = [e.data for e in journal if e.data.get("message") == "hold re-acquired"]
    assert [(d["key"], d["reacquisitions"]) for d in renewed] == [(keys[1], 1), (keys[2], 2)]
    assert await engine.store.pending_events(run_id) == []


async def test_a_reacquired_hold_resumes_the_wait_it_interrupted_and_the_saga_completes(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A hold that expires while the saga waits for payment is renewed, the wait goes on
    with its original timeout, and the payment completes the saga."""
    p = Provider()
    saga = Saga("pay", default_retry=ONCE)
    hold_fare(saga, p)
    saga.step("seat", p.action("seat"), compensate=p.undo("seat"))
    saga.wait("payment", "paid", timeout=1000)
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine = make_engine(saga.to_flow())
    run_id = (await engine.start("pay")).id
    worker = engine.worker()
    start = clock.now()
    await settle_until_waiting(engine, worker, clock, run_id)
    await clock.advance(650)
    await drive(worker, clock)
    waiting = await engine.get(run_id)
    assert waiting.status is RunStatus.WAITING
    assert waiting.wait_deadline == start + 1000
    assert dos(p) == [
        ("fare", key(run_id, "fare", 0)),
        ("seat", key(run_id, "seat", 0)),
        ("fare", key(run_id, "fare", 1)),
    ]
    assert undos(p) == [("fare", key(run_id, "fare", 0))]
    summary = await engine.describe(run_id)
    assert summary.position.at == ("payment",)
    assert summary.position.details["phase"] == "waiting"
    assert summary.position.details["reacquired"] == {"fare": 1}
    assert summary.next_timer is not None
    assert (summary.next_timer.name, summary.next_timer.at) == (
        "deadline:fare",
        start + 650 + 600,
    )
    await engine.send(run_id, "paid", {"amount": "99.00"})
    await settle(engine, worker, clock)
    done = await engine.get(run_id)
    assert done.status is RunStatus.COMPLETED
    assert done.result["results"]["payment"] == {"amount": "99.00"}
    assert [n for n, _ in dos(p)] == ["fare", "seat", "fare", "ticket"]
    assert await engine.store.pending_events(run_id) == []


async def test_a_renewed_hold_keeps_its_place_in_the_compensation_order(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A later failure undoes the steps in the saga's order, last first, the renewed hold
    with its new key."""
    p = Provider()
    p.fail.add("charge")
    saga = Saga("pay", default_retry=ONCE)
    hold_fare(saga, p)
    saga.step("seat", p.action("seat"), compensate=p.undo("seat"))
    saga.wait("payment", "paid")
    saga.step("charge", p.action("charge"), compensate=p.undo("charge"))
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine = make_engine(saga.to_flow())
    run_id = (await engine.start("pay")).id
    worker = engine.worker()
    await settle_until_waiting(engine, worker, clock, run_id)
    await clock.advance(650)
    await drive(worker, clock)
    await engine.send(run_id, "paid")
    await settle(engine, worker, clock)
    assert (await engine.get(run_id)).status is RunStatus.FAILED
    assert undos(p) == [
        ("fare", key(run_id, "fare", 0)),
        ("seat", key(run_id, "seat", 0)),
        ("fare", key(run_id, "fare", 1)),
    ]


async def test_a_group_hold_reacquires_every_branch_with_new_keys(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A parallel group with a deadline releases its branches (last first) and runs the
    group again with new branch keys; past its limit the saga compensates."""
    p = Provider()
    saga = Saga("rooms", default_retry=ONCE)
    saga.parallel(
        "rooms",
        branch("a", p.action("a"), compensate=p.undo("a")),
        branch("b", p.action("b"), compensate=p.undo("b")),
        deadline=300,
        on_expiry="reacquire",
        max_reacquires=1,
    )
    saga.wait("approval", "approved")
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine, run_id = await run_saga(make_engine, clock, saga)
    assert (await engine.get(run_id)).status is RunStatus.FAILED
    first, second = key(run_id, "rooms", 0), key(run_id, "rooms", 1)
    assert sorted(dos(p)) == sorted(
        [("a", f"{first}/a"), ("b", f"{first}/b"), ("a", f"{second}/a"), ("b", f"{second}/b")]
    )
    assert undos(p) == [
        ("b", f"{first}/b"),
        ("a", f"{first}/a"),
        ("b", f"{second}/b"),
        ("a", f"{second}/a"),
    ]


async def test_a_reacquisition_in_doubt_is_compensated_with_its_new_key(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A re-acquiring action that times out may have taken effect: the saga compensates
    it with the key that attempt used."""
    p = Provider()
    calls: list[str] = []

    async def fare(ctx: SagaContext) -> str:
        calls.append(ctx.idempotency_key)
        if len(calls) > 1:
            await ctx.clock.sleep(100)
        return "held"

    saga = Saga("doubt", default_retry=ONCE)
    saga.step(
        "fare", fare, compensate=p.undo("fare"), timeout=10, deadline=600, on_expiry="reacquire"
    )
    saga.wait("approval", "approved")
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine, run_id = await run_saga(make_engine, clock, saga)
    assert (await engine.get(run_id)).status is RunStatus.FAILED
    assert calls == [key(run_id, "fare", 0), key(run_id, "fare", 1)]
    assert undos(p) == [("fare", calls[0]), ("fare", calls[1])]


async def test_a_release_that_keeps_failing_parks_the_saga_and_resolve_reacquires(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A release that keeps failing asks an operator; `saga.resolve` counts it as released
    by hand, and the hold is taken again with a new key while the saga waits on."""
    p = Provider()
    p.fail_undo["fare"] = 100
    saga = Saga(
        "stuck",
        default_retry=ONCE,
        compensation_retry=ONCE,
    )
    hold_fare(saga, p)
    saga.wait("approval", "approved")
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine = make_engine(saga.to_flow())
    run_id = (await engine.start("stuck")).id
    worker = engine.worker()
    await settle_until_waiting(engine, worker, clock, run_id)
    await clock.advance(650)
    await drive(worker, clock)
    parked = await engine.get(run_id)
    assert parked.status is RunStatus.NEEDS_ATTENTION
    summary = await engine.describe(run_id)
    assert summary.position.details["phase"] == "needs_attention"
    assert parked.context["saga"]["attention"]["step"] == "saga:reacquire"
    await engine.send(run_id, "saga.resolve")
    await drive(worker, clock)
    assert (await engine.get(run_id)).status is RunStatus.WAITING
    assert dos(p) == [("fare", key(run_id, "fare", 0)), ("fare", key(run_id, "fare", 1))]
    journal = await engine.journal(run_id)
    assert [e.data.get("reason") for e in journal if e.kind == "compensation"] == [
        "released by an operator"
    ]


async def test_a_saga_position_follows_its_phase(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Run control shows a saga's element and phase: waiting at a signal, then failed
    once compensated."""
    p = Provider()
    saga = Saga("pos", default_retry=ONCE)
    hold_fare(saga, p, on_expiry="compensate")
    saga.wait("approval", "approved", timeout=60)
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine = make_engine(saga.to_flow())
    run_id = (await engine.start("pos")).id
    worker = engine.worker()
    await settle_until_waiting(engine, worker, clock, run_id)
    waiting = await engine.describe(run_id)
    assert waiting.position == Position(
        "sequence",
        ("approval",),
        {
            "pivoted": False,
            "done": ["fare"],
            "compensated": [],
            "holds": {"fare": clock.now() + 600},
            "reacquired": {},
            "phase": "waiting",
        },
    )
    assert waiting.waiting_for == ("approved", "deadline:fare")
    await settle(engine, worker, clock)
    failed = await engine.describe(run_id)
    assert (failed.position.details["phase"], failed.position.details["compensated"]) == (
        "failed",
        ["fare"],
    )


def test_reacquiring_needs_a_compensation_and_a_deadline() -> None:
    """A hold that re-acquires must be releasable and must have a deadline; the options
    are checked when declared."""
    p = Provider()
    saga = Saga("bad")
    saga.step("fare", p.action("fare"), deadline=60, on_expiry="reacquire")
    saga.parallel(
        "rooms",
        branch("a", p.action("a"), compensate=p.undo("a")),
        branch("b", p.action("b")),
        branch("quote", p.action("quote"), readonly=True),
        deadline=60,
        on_expiry="reacquire",
    )
    assert [str(x) for x in saga.validate() if x.severity == "error"] == [
        "error: fare: on_expiry='reacquire' needs a compensation to release the expired hold",
        "error: rooms/b: on_expiry='reacquire' needs a compensation to release the expired hold",
    ]
    with pytest.raises(DefinitionError, match="needs a compensation"):
        saga.to_flow()
    with pytest.raises(DefinitionError, match="needs a deadline"):
        Saga("x").step("a", p.action("a"), compensate=p.undo("a"), on_expiry="reacquire")
    with pytest.raises(DefinitionError, match="on_expiry must be"):
        Saga("x").step("a", p.action("a"), deadline=5, on_expiry="renew")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="max_reacquires must be >= 1"):
        Saga("x").step("a", p.action("a"), deadline=5, max_reacquires=0)


def test_a_group_deadline_shorter_than_its_timeout_is_an_error() -> None:
    """A group hold that expires before the group may even finish is refused."""
    p = Provider()
    saga = Saga("bad")
    saga.parallel("rooms", branch("a", p.action("a")), timeout=60, deadline=30)
    assert "error: rooms: deadline 30s is not longer than the step's timeout 60s" in [
        str(x) for x in saga.validate()
    ]


def test_steps_after_a_final_pivot_are_unreachable_errors() -> None:
    """A final pivot completes the saga, so every element after it is an error; a final
    pivot is a pivot."""
    p = Provider()
    saga = Saga("final")
    saga.step("hold", p.action("hold"), compensate=p.undo("hold"))
    ticket = saga.step("ticket", p.action("ticket"), final=True)
    assert ticket.pivot
    assert saga.validate() == []
    saga.step("notify", p.action("notify"))
    saga.wait("feedback", "rated")
    assert [str(x) for x in saga.validate()] == [
        "error: notify: unreachable: the saga completes at its final pivot ticket",
        "error: feedback: unreachable: the saga completes at its final pivot ticket",
    ]
    with pytest.raises(DefinitionError, match="unreachable"):
        saga.to_flow()


async def test_a_saga_completes_at_its_final_pivot(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A saga whose last step is a final pivot completes when it succeeds."""
    p = Provider()
    saga = Saga("final", default_retry=ONCE)
    saga.step("hold", p.action("hold"), compensate=p.undo("hold"))
    saga.step("ticket", p.action("ticket"), final=True)
    engine, run_id = await run_saga(make_engine, clock, saga)
    assert (await engine.get(run_id)).status is RunStatus.COMPLETED
    assert p.done() == ["hold", "ticket"]


def test_the_diagram_shows_holds_reacquisition_and_the_final_pivot() -> None:
    """Holds carry their deadline, a re-acquiring hold loops back on itself, and a final
    pivot is labelled as such."""
    p = Provider()
    saga = Saga("drawn")
    saga.step(
        "fare",
        p.action("fare"),
        compensate=p.undo("fare"),
        deadline=900,
        on_expiry="reacquire",
        max_reacquires=2,
    )
    saga.parallel("rooms", branch("a", p.action("a"), compensate=p.undo("a")), deadline=600)
    saga.step("ticket", p.action("ticket"), final=True)
    text = saga.to_mermaid()
    assert 'fare["fare ⏳ 900s ↻ 2"]' in text
    assert 'fare -. "expired: release, re-acquire ≤2" .-> fare' in text
    assert 'subgraph rooms["rooms (join: all) ⏳ 600s"]' in text
    assert 'ticket{{"ticket ⟂ final pivot"}}' in text


async def test_a_crash_while_reacquiring_neither_releases_twice_nor_changes_the_new_key(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A worker that dies after the release and inside the re-acquiring action leaves the
    saga to another worker, which re-acquires with the same new key and releases nothing
    again."""

    class Crash(BaseException):
        pass

    p = Provider()
    armed = [True]

    async def fare(ctx: SagaContext) -> str:
        p.calls.append(("do", "fare", ctx.idempotency_key))
        if ctx.idempotency_key.endswith(":1") and armed and armed.pop():
            raise Crash()
        return "held"

    saga = Saga("crashy", default_retry=ONCE)
    saga.step("fare", fare, compensate=p.undo("fare"), deadline=600, on_expiry="reacquire")
    saga.wait("approval", "approved")
    saga.step("ticket", p.action("ticket"), pivot=True)
    engine = make_engine(saga.to_flow())
    run_id = (await engine.start("crashy")).id
    await settle_until_waiting(engine, engine.worker(worker_id="a"), clock, run_id)
    await clock.advance(650)
    with pytest.raises(Crash):
        await engine.worker(worker_id="a").run_until_idle()
    await clock.advance(60)  # past the dead worker's lease
    await drive(engine.worker(worker_id="b"), clock)
    assert (await engine.get(run_id)).status is RunStatus.WAITING
    assert dos(p) == [
        ("fare", key(run_id, "fare", 0)),
        ("fare", key(run_id, "fare", 1)),
        ("fare", key(run_id, "fare", 1)),
    ]
    assert undos(p) == [("fare", key(run_id, "fare", 0))]
