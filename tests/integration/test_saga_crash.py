"""Sagas in real worker processes that are SIGKILLed: mid-burst, and mid-compensation.

The sagas of :mod:`tests.integration.saga_flows` write every effect and compensation to a
provider ledger under its idempotency key; the checks read that ledger, the runs and their
journals from the outside.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.helpers import assert_eventually, assert_gapless
from tests.integration.processes import WorkerProcesses, db_sessions, sessions_ended
from tests.integration.saga_flows import CRASH_WORKER_ENV, FORWARD, PIVOT, trip
from tripwright.demo.flow import EffectLedger
from tripwright.demo.job import spawn_worker
from tripwright.engine import Engine, FlowRegistry, RunRecord, RunStatus
from tripwright.engine.store import Store, create_store

pytestmark = pytest.mark.slow

FLOWS_REF = "tests.integration.saga_flows:flows"
LEASE_TTL = 1.5
RUNS = 150
KILL_AFTER = int(RUNS * 0.35)
#: Where runs fail for good, by run number: nowhere, at the first step (nothing to undo),
#: mid-way, and at the pivot itself (everything before it is undone).
FATES: tuple[str | None, ...] = (None, "flight", "room", "charge", PIVOT, None)


class Effect(NamedTuple):
    key: str
    run_id: str
    step: str
    calls: int
    worker: str


def ledger_rows(path: Path) -> dict[str, list[Effect]]:
    """The ledger's effects by run, in the order they first took effect."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT key, run_id, step, calls, worker FROM effects ORDER BY rowid"
        ).fetchall()
    finally:
        conn.close()
    by_run: dict[str, list[Effect]] = defaultdict(list)
    for row in rows:
        effect = Effect(*row)
        by_run[effect.run_id].append(effect)
    return by_run


async def check_saga(store: Store, run: RunRecord, effects: list[Effect]) -> None:
    """A completed saga applied each step once; a failed one applied the steps before its
    failure once each, then undid exactly those, in reverse order, once each; nothing else."""
    fail_at = (run.input or {}).get("fail_at")
    applied = FORWARD if fail_at is None else FORWARD[: FORWARD.index(fail_at)]
    forward = [e for e in effects if not e.step.startswith("undo:")]
    undone = [e for e in effects if e.step.startswith("undo:")]
    assert {e.key: e.step for e in forward} == {f"{run.id}:step:{s}:0": s for s in applied}, run.id
    expected_undo = [] if fail_at is None else list(reversed(applied))
    assert [(e.step, e.key) for e in undone] == [
        (f"undo:{s}", f"{run.id}:undo:{run.id}:step:{s}:0") for s in expected_undo
    ], run.id
    expected_status = RunStatus.COMPLETED if fail_at is None else RunStatus.FAILED
    assert run.status is expected_status, (run.id, run.status, run.error)
    journal = await store.journal(run.id)
    assert_gapless(journal)
    assert [e.data["step"] for e in journal if e.kind == "compensation"] == expected_undo


async def _settled(store: Store) -> int:
    counts = await store.count_runs(flow=trip.name)
    return counts.get(RunStatus.COMPLETED.value, 0) + counts.get(RunStatus.FAILED.value, 0)


async def _finish_with_worker_b(
    store: Store, db_url: str, ledger: Path, workers: WorkerProcesses, runs: int
) -> None:
    workers.adopt(
        "worker-B", spawn_worker(db_url, "worker-B", ledger, lease_ttl=LEASE_TTL, flows=FLOWS_REF)
    )

    async def all_settled() -> bool:
        workers.assert_alive("worker-B")
        return await _settled(store) == runs

    await assert_eventually(all_settled, timeout=60)
    assert await workers.terminate("worker-B") == 0, workers.log("worker-B")


async def test_sagas_in_a_sigkilled_worker_complete_or_compensate_exactly_once(
    db_url: str, tmp_path: Path, workers: WorkerProcesses
) -> None:
    """Worker A is SIGKILLed mid-burst (sagas completing, failing and compensating);
    worker B finishes: every completed saga applied each step once, every failed one undid
    exactly its completed pre-pivot steps, last first, once each, and nothing else ran."""
    ledger = tmp_path / "provider-ledger.db"
    EffectLedger(ledger)
    store = create_store(db_url)
    await store.open()
    try:
        engine = Engine(store, FlowRegistry([trip.to_flow()]))
        inputs = [{"n": i, "fail_at": FATES[i % len(FATES)]} for i in range(RUNS)]
        await engine.start_many(trip.name, inputs)
        before = await db_sessions(db_url)
        workers.adopt(
            "worker-A",
            spawn_worker(db_url, "worker-A", ledger, lease_ttl=LEASE_TTL, flows=FLOWS_REF),
        )

        async def a_is_mid_way() -> bool:
            return await _settled(store) >= KILL_AFTER

        await workers.kill_when("worker-A", a_is_mid_way)
        await sessions_ended(db_url, before)
        at_kill = await store.list_runs(flow=trip.name, limit=2 * RUNS)
        in_flight = {r.id for r in at_kill if r.lease_owner == "worker-A" and not r.is_terminal}
        assert in_flight, "worker A held no saga when it was killed"
        assert sum(r.is_terminal for r in at_kill) < RUNS, "A finished before it was killed"

        await _finish_with_worker_b(store, db_url, ledger, workers, RUNS)

        effects = ledger_rows(ledger)
        runs = await store.list_runs(flow=trip.name, limit=2 * RUNS)
        assert len(runs) == RUNS
        for run in runs:
            await check_saga(store, run, effects.get(run.id, []))
        # Only a saga A was executing when it died may have seen a call repeated.
        repeated = {e.run_id for rows in effects.values() for e in rows if e.calls > 1}
        assert repeated <= in_flight
        assert set(effects) - {r.id for r in runs} == set()
    finally:
        await store.close()


async def test_a_worker_killed_inside_a_compensation_leaves_it_to_be_finished_once(
    db_url: str, tmp_path: Path, workers: WorkerProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A dies right after a compensation took effect and before its checkpoint;
    worker B runs that compensation again with the same key (the provider sees a repeated
    call, not a second effect) and finishes the rest of the compensation in order."""
    runs_count = 12
    ledger = tmp_path / "provider-ledger.db"
    EffectLedger(ledger)
    monkeypatch.setenv(CRASH_WORKER_ENV, "worker-A")
    store = create_store(db_url)
    await store.open()
    try:
        engine = Engine(store, FlowRegistry([trip.to_flow()]))
        inputs = [{"n": i, "fail_at": "charge", "crash_in_undo": "room"} for i in range(runs_count)]
        await engine.start_many(trip.name, inputs)
        before = await db_sessions(db_url)
        worker_a = workers.adopt(
            "worker-A",
            spawn_worker(db_url, "worker-A", ledger, lease_ttl=LEASE_TTL, flows=FLOWS_REF),
        )
        assert await asyncio.to_thread(worker_a.wait, 30) == -signal.SIGKILL
        await sessions_ended(db_url, before)
        crashed = {
            e.run_id
            for rows in ledger_rows(ledger).values()
            for e in rows
            if e.step == "undo:room" and e.worker == "worker-A"
        }
        assert crashed, "worker A never reached the compensation it dies in"
        for run_id in crashed:
            run = await store.get_run(run_id)
            assert run.step == "saga:compensate"
            assert "room" not in run.context["saga"]["compensated"], run_id

        await _finish_with_worker_b(store, db_url, ledger, workers, runs_count)

        effects = ledger_rows(ledger)
        for run in await store.list_runs(flow=trip.name, limit=2 * runs_count):
            await check_saga(store, run, effects[run.id])
        for run_id in crashed:
            [room] = [e for e in effects[run_id] if e.step == "undo:room"]
            assert (room.calls, room.worker) == (2, "worker-A")
            assert [e.worker for e in effects[run_id] if e.step == "undo:flight"] == ["worker-B"]
    finally:
        await store.close()
