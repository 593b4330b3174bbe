"""Statechart runs survive a SIGKILLed worker: another worker resumes each machine exactly
where its last checkpoint left it, pending delayed sends included."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import assert_eventually, assert_gapless
from tests.integration.processes import WorkerProcesses, db_sessions, sessions_ended
from tests.integration.statechart_flows import REMIND_AFTER, reminder, reminder_batched
from tripwright.demo.job import spawn_worker
from tripwright.engine import Engine, FlowRegistry, RunRecord, RunStatus
from tripwright.engine.store import Store, create_store
from tripwright.flows.statechart import Statechart, StatechartFlow, send_event

pytestmark = pytest.mark.slow

RUNS = 24
FLOWS = "tests.integration.statechart_flows"
LEASE_TTL = 1.0


def spawn(workers: WorkerProcesses, db_url: str, worker_id: str, flows: str) -> None:
    """Start ``tripwright worker`` serving the test's statechart (``flows``: a reference)."""
    ledger = workers.directory / "unused-ledger.db"
    workers.adopt(
        worker_id,
        spawn_worker(db_url, worker_id, ledger, lease_ttl=LEASE_TTL, concurrency=16, flows=flows),
    )


async def _always() -> bool:
    return True


async def runs_by_id(store: Store, chart: Statechart) -> dict[str, RunRecord]:
    return {run.id: run for run in await store.list_runs(flow=chart.name, limit=10 * RUNS)}


def configuration(run: RunRecord) -> list[str]:
    return list(run.context.get("configuration") or [])


def transition_events(journal: list[Any]) -> list[Any]:
    """The external events (by engine event id) the machine's transitions took."""
    return [
        e.data["event"]["id"]
        for e in journal
        if e.kind == "transition" and (e.data.get("event") or {}).get("id") is not None
    ]


@pytest.mark.parametrize(
    ("chart", "flows"),
    [(reminder, f"{FLOWS}:charts"), (reminder_batched, f"{FLOWS}:batched")],
    ids=["one-macrostep-per-checkpoint", "queued-macrosteps-per-checkpoint"],
)
async def test_a_killed_worker_s_machines_resume_with_their_timers_and_events(
    db_url: str, workers: WorkerProcesses, chart: Statechart, flows: str
) -> None:
    """Worker A is SIGKILLed while machines wait on timers and hold queued events; worker B
    resumes every machine from its last checkpoint: each queued event is taken exactly
    once, in order, and each pending timer fires at its time (with one macrostep per
    checkpoint, or several queued ones)."""
    store = create_store(db_url)
    await store.open()
    engine = Engine(store, FlowRegistry([StatechartFlow(chart)]))
    try:
        runs = await engine.start_many(chart.name, [None] * RUNS)
        ids = [run.id for run in runs]
        started = max(run.created_at for run in runs)
        before_a = await db_sessions(db_url)  # the test's own sessions, on PostgreSQL
        spawn(workers, db_url, "worker-A", flows)

        async def all_waiting() -> bool:
            workers.assert_alive("worker-A")
            return all(
                configuration(run) == ["waiting"]
                for run in (await runs_by_id(store, chart)).values()
            )

        await assert_eventually(all_waiting, timeout=20)
        busy, idle = ids[: RUNS // 2], ids[RUNS // 2 :]
        for run_id in busy:
            for name in ("go", "tick", "tick", "tick", "done"):
                await send_event(engine, run_id, name)
        await workers.kill_when("worker-A", _always)
        await sessions_ended(db_url, before_a)
        at_kill = await runs_by_id(store, chart)
        journals_at_kill = {run_id: await engine.journal(run_id) for run_id in ids}
        assert engine.clock.now() < started + REMIND_AFTER, "the timers fired before the kill"
        for run_id in idle:
            [timer] = await store.pending_events(run_id)
            assert (timer.kind, configuration(at_kill[run_id])) == ("timer", ["waiting"])

        spawn(workers, db_url, "worker-B", flows)

        async def busy_done_idle_reminded() -> bool:
            workers.assert_alive("worker-B")
            now = await runs_by_id(store, chart)
            return all(now[r].status is RunStatus.COMPLETED for r in busy) and all(
                configuration(now[r]) == ["reminded"] for r in idle
            )

        await assert_eventually(busy_done_idle_reminded, timeout=30)
        for run_id in idle:
            for name in ("go", "tick", "tick", "tick", "done"):
                await send_event(engine, run_id, name)

        async def all_done() -> bool:
            workers.assert_alive("worker-B")
            now = await runs_by_id(store, chart)
            return all(run.status is RunStatus.COMPLETED for run in now.values())

        await assert_eventually(all_done, timeout=30)
        assert await workers.terminate("worker-B") == 0, workers.log("worker-B")

        final = await runs_by_id(store, chart)
        for run_id in ids:
            journal = await engine.journal(run_id)
            assert_gapless(journal)
            # B carried on from A's last checkpoint: A's journal is a prefix of the run's.
            before = journals_at_kill[run_id]
            assert journal[: len(before)] == before
            sent = [e.id for e in await store.pending_events(run_id)]
            assert sent == []
            taken = transition_events(journal)
            assert len(taken) == len(set(taken)), f"an event was applied twice: {run_id}"
            expected = {"ticks": 3, "reminded": run_id in idle}
            assert (final[run_id].result, configuration(final[run_id])) == (
                expected,
                ["finished"],
            )
            fired = [
                e for e in journal if e.kind == "timer_fired" and e.data["event"].startswith("trip")
            ]
            assert len(fired) == (1 if run_id in idle else 0)
            if fired:
                assert fired[0].at >= started + REMIND_AFTER - 0.5
    finally:
        await store.close()
