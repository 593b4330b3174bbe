"""Property: whatever fails where, a saga undoes exactly what it completed before the pivot.

Random sagas (3-6 elements: steps and parallel groups of 2-3 branches joined by any
policy, an optional pivot) meet a random failure point (a step, or some branches of a
group, before, at or after the pivot, or none) and random failures inside compensations (transient
ones, and ones that outlast the retry policy and need an operator). After the pivot the
failure either lasts (the operator resolves the parked run) or heals once the run is
parked (the operator retries it). The provider ledger kept by the test must show exactly
the compensations a model of the saga predicts: before the pivot, the completed steps and
branches are compensated once each, in reverse order, with the key of the action they
undo; after the pivot nothing is compensated (a race's losers aside); every run settles,
and no action is applied under two keys.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_gapless, settle
from tests.property.saga_support import (
    COMPENSATION_ATTEMPTS,
    CONFIG,
    SETTINGS,
    on_emptied_postgres,
    on_fresh_sqlite,
)
from tripwright.engine import (
    Engine,
    FlowRegistry,
    RetryPolicy,
    RunStatus,
    VirtualClock,
)
from tripwright.engine.store import create_store
from tripwright.flows import ALL, ANY, RACE, Saga, SagaContext, at_least
from tripwright.flows.saga import Join, branch

JOINS: dict[str, Join] = {"all": ALL, "any": ANY, "at_least2": at_least(2), "race": RACE}


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(min_value=3, max_value=6))
    case = draw(st.sampled_from(["after the pivot", "before the pivot", "no pivot", "none"]))
    last = count - 1
    pivot: int | None = None
    failing: int | None = None
    if case == "after the pivot":
        pivot = draw(st.integers(min_value=0, max_value=last - 1))
        failing = draw(st.integers(min_value=pivot + 1, max_value=last))
    elif case == "before the pivot":
        pivot = draw(st.integers(min_value=0, max_value=last))
        failing = draw(st.integers(min_value=0, max_value=pivot))
    elif case == "no pivot":
        failing = draw(st.integers(min_value=0, max_value=last))
    else:
        pivot = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=last)))
    elements: list[dict[str, Any]] = []
    for i in range(count):
        # Groups as often as steps (and more often where the failure is).
        size = draw(st.sampled_from([2, 3, 0] if i == failing else [0, 2, 3]))
        if i != pivot and size:
            elements.append({"branches": size, "join": draw(st.sampled_from(sorted(JOINS)))})
        else:
            elements.append({"branches": 0})
    failing_branches: set[int] = set()
    if failing is not None and elements[failing]["branches"]:
        size = elements[failing]["branches"]
        failing_branches = draw(
            st.sets(st.integers(min_value=0, max_value=size - 1), min_size=1, max_size=size)
        )
    names = [n for i, e in enumerate(elements) for n in action_names(i, e)]
    undo_failures = {
        n: draw(st.integers(min_value=0, max_value=COMPENSATION_ATTEMPTS + 2)) for n in names
    }
    return {
        "elements": elements,
        "pivot": pivot,
        "failing": failing,
        "failing_branches": failing_branches,
        "heals": draw(st.booleans()),
        "forward_attempts": draw(st.integers(min_value=1, max_value=2)),
        "undo_failures": undo_failures,
    }


def action_names(index: int, element: dict[str, Any]) -> list[str]:
    """The ledger's names of an element's actions: ``s2`` or ``s2/b0``, ``s2/b1``."""
    if not element["branches"]:
        return [f"s{index}"]
    return [f"s{index}/b{j}" for j in range(element["branches"])]


def predicted(scenario: dict[str, Any]) -> tuple[RunStatus, list[str]]:
    """What the saga must end as, and the compensations it must run, in order.

    Branches without delays all finish before a race is decided, so a race's winner is
    its first branch that did not fail, and its losers are the others that succeeded.
    """
    pivot, failing = scenario["pivot"], scenario["failing"]
    undos: list[str] = []
    kept: list[list[str]] = []
    for index, element in enumerate(scenario["elements"]):
        names = action_names(index, element)
        after_pivot = pivot is not None and index > pivot
        failed = set()
        if index == failing:
            failed = {names[j] for j in scenario["failing_branches"]} or set(names)
        ok = [n for n in names if n not in failed]
        if element["branches"]:
            join = JOINS[element["join"]]
            if join is RACE:
                undos += ok[1:]  # the race's losers
                ok = ok[:1]
            if len(ok) >= join.needed(len(names)):
                kept.append(ok)
                continue
            if after_pivot:
                if scenario["heals"]:  # the operator's retry runs the failed branches
                    winners = names[:1] if join is RACE else names
                    undos += names[1:] if join is RACE else []
                    kept.append(winners)
                else:  # resolved by hand, with what succeeded
                    kept.append(ok)
                continue
            kept.append(ok)
        elif not failed or after_pivot:
            kept.append(names)
            continue
        undos += [n for group in reversed(kept) for n in reversed(group)]
        return RunStatus.FAILED, undos
    return RunStatus.COMPLETED, undos


class Ledger:
    def __init__(self, scenario: dict[str, Any]) -> None:
        self.actions: list[tuple[str, str]] = []
        self.undos: list[tuple[str, str]] = []
        self.undo_failures = dict(scenario["undo_failures"])
        self.failing: set[str] = set()

    def action(self, name: str) -> Any:
        async def act(ctx: SagaContext) -> str:
            if name in self.failing:
                raise RuntimeError(f"{name} refused")
            if (name, ctx.idempotency_key) not in self.actions:
                self.actions.append((name, ctx.idempotency_key))
            return name

        return act

    def undo(self, name: str) -> Any:
        async def compensate(ctx: SagaContext) -> None:
            if self.undo_failures[name] > 0:
                self.undo_failures[name] -= 1
                raise ConnectionError(f"undo {name} unreachable")
            assert ctx.forward_key is not None
            # A group's compensation undoes its branches in one step: retried after a
            # failure, it undoes the earlier ones again, with the same key (a provider's
            # idempotency makes that once).
            if (name, ctx.forward_key) not in self.undos:
                self.undos.append((name, ctx.forward_key))

        return compensate


def build(scenario: dict[str, Any], ledger: Ledger) -> Saga:
    saga = Saga(
        "prop",
        default_retry=RetryPolicy(max_attempts=1),
        compensation_retry=RetryPolicy(max_attempts=COMPENSATION_ATTEMPTS, initial_interval=0.1),
        forward_retry=RetryPolicy(max_attempts=scenario["forward_attempts"], initial_interval=1),
    )
    for index, element in enumerate(scenario["elements"]):
        names = action_names(index, element)
        if index == scenario["failing"]:
            chosen = scenario["failing_branches"]
            ledger.failing |= {names[j] for j in chosen} if chosen else set(names)
        if not element["branches"]:
            saga.step(
                names[0],
                ledger.action(names[0]),
                compensate=ledger.undo(names[0]),
                pivot=index == scenario["pivot"],
            )
            continue
        saga.parallel(
            f"s{index}",
            *(branch(n.split("/")[1], ledger.action(n), compensate=ledger.undo(n)) for n in names),
            join=JOINS[element["join"]],
        )
    return saga


async def check(url: str, scenario: dict[str, Any]) -> None:
    ledger = Ledger(scenario)
    saga = build(scenario, ledger)
    clock = VirtualClock()
    store = create_store(url)
    await store.open()
    try:
        engine = Engine(store, FlowRegistry([saga.to_flow()]), clock=clock, config=CONFIG)
        run = await engine.start("prop")
        worker = engine.worker()
        await settle(engine, worker, clock)
        for _ in range(10):  # an operator handles parked runs until they settle
            current = await engine.get(run.id)
            if current.status is not RunStatus.NEEDS_ATTENTION:
                break
            stuck = current.context["saga"]["attention"]["step"]
            if stuck.startswith("step:") and not scenario["heals"]:
                # a forward step or join failed for good: resolved by hand
                await engine.send(run.id, "saga.resolve")
            else:
                # a compensation failed (transiently), or the forward failure healed
                if stuck.startswith("step:"):
                    ledger.failing.clear()
                await engine.send(run.id, "saga.retry")
            await settle(engine, worker, clock)
        final = await engine.get(run.id)
        assert_gapless(await engine.journal(run.id))
    finally:
        await store.close()

    status, undos = predicted(scenario)
    completed = [n for n, _ in ledger.actions]
    keys = dict(ledger.actions)
    assert len(completed) == len(set(completed)), "an action applied under two keys"
    assert final.status is status, final.status
    assert [n for n, _ in ledger.undos] == undos, "exactly these, in this order, once each"
    assert all(key == keys[n] for n, key in ledger.undos), "undo carries the action's key"


@SETTINGS
@given(scenario=scenarios())
def test_saga_compensates_exactly_the_completed_pre_pivot_steps_sqlite(
    scenario: dict[str, Any],
) -> None:
    """On SQLite, compensation undoes exactly the completed pre-pivot steps, last first."""
    on_fresh_sqlite(check, scenario)


@pytest.mark.postgres
@settings(SETTINGS, max_examples=25)
@given(scenario=scenarios())
def test_saga_compensates_exactly_the_completed_pre_pivot_steps_postgres(
    pg_url: str, scenario: dict[str, Any]
) -> None:
    """On PostgreSQL, compensation undoes exactly the completed pre-pivot steps, last first."""
    on_emptied_postgres(check, pg_url, scenario)
