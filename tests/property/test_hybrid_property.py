"""Property: whatever a trip machine is told while its sagas run (change the booking,
approve the fare, cancel) and wherever its saga fails, every saga run ends, undoes
exactly what it applied (and a step it stopped mid-call), last first, once per key,
unless it completed, and the
machine's final state and its one notification agree with its last saga's outcome."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FAST
from tests.helpers import settle_events
from tests.hybrid_flows import Ledger, trip_hybrid
from tripwright.engine import Engine, RunStatus, VirtualClock
from tripwright.engine.store import create_store, upgrade
from tripwright.flows.statechart import send_event
from tripwright.flows.statechart.durable import configuration_of

FORWARD = ["hold_flight", "hold_room", "charge"]
UNDOABLE = ("hold_flight", "hold_room")
_examples = itertools.count()

scenarios = st.fixed_dictionaries(
    {
        "fail_at": st.sampled_from([None, "hold_flight", "hold_room", "charge"]),
        "commands": st.lists(
            st.tuples(st.sampled_from(["change", "approve", "cancel"]), st.booleans()),
            max_size=5,
        ),
    }
)


async def play(url: str, scenario: dict[str, Any]) -> None:
    ledger = Ledger()
    hybrid = trip_hybrid(ledger)
    clock = VirtualClock()
    store = create_store(url)
    async with store:
        engine = Engine(store, [], clock=clock, config=FAST)
        hybrid.register(engine)
        bus = hybrid.event_bus(store, clock=clock)
        worker = engine.worker()
        run_id = f"trip-{next(_examples)}"
        await engine.start(
            "trip", {"trip_id": run_id, "fail_at": scenario["fail_at"]}, run_id=run_id
        )
        await send_event(engine, run_id, "book")
        names = {"change": "change", "approve": "fare.approved", "cancel": "cancel"}
        for command, settle_first in scenario["commands"]:
            if settle_first:
                await settle_events(engine, bus, worker, clock)
            if (await engine.get(run_id)).is_terminal:
                break
            await send_event(engine, run_id, names[command])
        await settle_events(engine, bus, worker, clock)
        if not (await engine.get(run_id)).is_terminal:
            await send_event(engine, run_id, "cancel")
            await settle_events(engine, bus, worker, clock)
        machine = await engine.get(run_id)
        children = sorted(
            (
                r
                for r in await store.list_runs(flow="book_providers", limit=100)
                if r.id.startswith(f"{run_id}.")
            ),
            key=lambda r: r.created_at,
        )
        assert machine.status is RunStatus.COMPLETED
        for child in children:
            assert child.is_terminal, child.id
            calls = [(step, key) for step, key in ledger.calls if key.startswith(f"{child.id}:")]
            keys = [key for _, key in calls]
            assert len(keys) == len(set(keys)), f"a key was applied twice: {calls}"
            forward = [step for step, _ in calls if not step.startswith("undo:")]
            undone = [step[5:] for step, _ in calls if step.startswith("undo:")]
            if child.status is RunStatus.COMPLETED:
                assert (forward, undone) == (FORWARD, [])
            else:
                assert forward == FORWARD[: len(forward)]
                # A step stopped by the cancel is in doubt: it is undone too.
                in_doubt = FORWARD[: len(forward) + 1]
                assert undone in (forward[::-1], [s for s in in_doubt if s in UNDOABLE][::-1])
        state = configuration_of(machine)
        last = children[-1] if children else None
        if state == ["confirmed"]:
            assert last is not None
            assert last.status is RunStatus.COMPLETED
        elif state == ["failed"]:
            assert last is not None
            assert last.status is RunStatus.FAILED
        else:
            assert state == ["cancelled"]
        notified = [n for n in ledger.notified if n["subject"] == run_id]
        assert len(notified) == (1 if state == ["confirmed"] else 0)


@pytest.fixture(scope="module")
def trips_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One migrated SQLite file for every example (each plays its own trip)."""
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('hybrid')) / 'trips.db'}"
    upgrade(url)
    return url


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scenario=scenarios)
def test_sagas_undo_what_they_applied_and_the_machine_agrees(
    trips_url: str, scenario: dict[str, Any]
) -> None:
    """Every saga ends, undoing exactly its applied steps (last first, once per key)
    unless it completed; the machine's final state matches its last saga."""
    asyncio.run(play(trips_url, scenario))
