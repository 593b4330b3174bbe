"""Property: whatever fails where, a saga undoes exactly what it completed before the pivot.

Random sagas (3-6 steps, an optional pivot) meet a random failing step and random
failures inside compensations (transient ones, and ones that outlast the retry policy and
need an operator). The provider ledger kept by the test must show: before the pivot, the
completed steps are compensated exactly once each, in reverse order, with the key of the
action they undo; after the pivot nothing is compensated; every run settles.
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
from tripwright.flows import Saga, SagaContext


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    steps = draw(st.integers(min_value=3, max_value=6))
    pivot = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=steps - 1)))
    failing = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=steps - 1)))
    undo_failures = draw(
        st.lists(
            st.integers(min_value=0, max_value=COMPENSATION_ATTEMPTS + 2),
            min_size=steps,
            max_size=steps,
        )
    )
    return {"steps": steps, "pivot": pivot, "failing": failing, "undo_failures": undo_failures}


class Ledger:
    def __init__(self, undo_failures: list[int]) -> None:
        self.actions: list[tuple[int, str]] = []
        self.undos: list[tuple[int, str]] = []
        self.undo_failures = list(undo_failures)

    def action(self, index: int, fail: bool) -> Any:
        async def act(ctx: SagaContext) -> int:
            if fail:
                raise RuntimeError(f"step {index} refused")
            if (index, ctx.idempotency_key) not in self.actions:
                self.actions.append((index, ctx.idempotency_key))
            return index

        return act

    def undo(self, index: int) -> Any:
        async def compensate(ctx: SagaContext) -> None:
            if self.undo_failures[index] > 0:
                self.undo_failures[index] -= 1
                raise ConnectionError(f"undo {index} unreachable")
            assert ctx.forward_key is not None
            self.undos.append((index, ctx.forward_key))

        return compensate


async def check(url: str, scenario: dict[str, Any]) -> None:
    steps, pivot, failing = scenario["steps"], scenario["pivot"], scenario["failing"]
    ledger = Ledger(scenario["undo_failures"])
    saga = Saga(
        "prop",
        default_retry=RetryPolicy(max_attempts=1),
        compensation_retry=RetryPolicy(max_attempts=COMPENSATION_ATTEMPTS, initial_interval=0.1),
        forward_retry=RetryPolicy(max_attempts=1),
    )
    for i in range(steps):
        saga.step(
            f"s{i}", ledger.action(i, i == failing), compensate=ledger.undo(i), pivot=i == pivot
        )
    clock = VirtualClock()
    store = create_store(url)
    await store.open()
    try:
        engine = Engine(store, FlowRegistry([saga.to_flow()]), clock=clock, config=CONFIG)
        run = await engine.start("prop")
        worker = engine.worker()
        await settle(engine, worker, clock)
        for _ in range(10):  # an operator retries parked runs until they settle
            current = await engine.get(run.id)
            if current.status is not RunStatus.NEEDS_ATTENTION:
                break
            if failing is not None and pivot is not None and failing > pivot:
                # post-pivot failure: the operator resolves it by hand
                await engine.send(run.id, "saga.resolve")
            else:
                await engine.send(run.id, "saga.retry")
            await settle(engine, worker, clock)
        final = await engine.get(run.id)
        assert_gapless(await engine.journal(run.id))
    finally:
        await store.close()

    completed = [i for i, _ in ledger.actions]
    keys = dict(ledger.actions)
    assert len(completed) == len(set(completed)), "a step applied twice"
    if failing is None:
        assert final.status is RunStatus.COMPLETED
        assert ledger.undos == []
        return
    if pivot is not None and failing > pivot:
        assert final.status is RunStatus.COMPLETED, final.status
        assert ledger.undos == [], "nothing is compensated after the pivot"
        return
    assert final.status is RunStatus.FAILED
    expected = list(reversed(completed))
    assert [i for i, _ in ledger.undos] == expected, "reverse order, each exactly once"
    assert all(key == keys[i] for i, key in ledger.undos), "undo carries the action's key"


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
