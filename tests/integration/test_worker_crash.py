"""A real ``tripwright worker`` process is SIGKILLed mid-way; a second one finishes the job.

This is the demo (``tripwright.demo``) as a test, with its guarantees checked from the
outside: the provider ledger, the runs and their journals are read directly rather than
taken from :class:`tripwright.demo.job.DemoReport`.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.helpers import assert_eventually, assert_gapless
from tests.integration.processes import WorkerProcesses, db_sessions, sessions_ended
from tripwright.demo.flow import EffectLedger, sample
from tripwright.demo.job import spawn_worker
from tripwright.engine import (
    Engine,
    EngineConfig,
    Flow,
    FlowRegistry,
    JournalKind,
    RunRecord,
    RunStatus,
    StepContext,
)
from tripwright.engine.store import Store, create_store

pytestmark = pytest.mark.slow

RUNS = 200
KILL_AFTER = int(RUNS * 0.35)  # runs completed by worker A before it is SIGKILLed
LEASE_TTL = 1.5
STEPS = sorted(spec.name for spec in sample.steps)


async def _completed(store: Store) -> int:
    return (await store.count_runs(flow=sample.name)).get(RunStatus.COMPLETED.value, 0)


async def test_a_sigkilled_worker_loses_nothing_and_a_second_worker_finishes_its_runs(
    db_url: str, tmp_path: Path, workers: WorkerProcesses
) -> None:
    """After worker A is SIGKILLed mid-way, worker B completes every run (A's in-flight ones
    only once their leases expire), each step's effect lands exactly once at the provider,
    and every journal is gapless."""
    ledger_path = tmp_path / "provider-ledger.db"
    EffectLedger(ledger_path)
    store = create_store(db_url)
    await store.open()
    engine = Engine(store, FlowRegistry([sample]))
    try:
        created = await engine.start_many(sample, [{"n": i} for i in range(RUNS)])
        run_ids = {run.id for run in created}

        before_a = await db_sessions(db_url)  # the test's own sessions, on PostgreSQL
        workers.adopt(
            "worker-A", spawn_worker(db_url, "worker-A", ledger_path, lease_ttl=LEASE_TTL)
        )

        async def a_is_mid_way() -> bool:
            return await _completed(store) >= KILL_AFTER

        await workers.kill_when("worker-A", a_is_mid_way, timeout=20)

        # A commit A sent just before dying may still land: wait until its sessions are gone.
        await sessions_ended(db_url, before_a)
        at_kill = {run.id: run for run in await store.list_runs(flow=sample.name, limit=2 * RUNS)}
        assert set(at_kill) == run_ids
        in_flight: dict[str, RunRecord] = {
            run_id: run
            for run_id, run in at_kill.items()
            if run.lease_owner == "worker-A" and not run.is_terminal
        }
        done_at_kill = sum(run.status is RunStatus.COMPLETED for run in at_kill.values())
        assert in_flight, "worker A held no run when it was killed"
        assert done_at_kill < RUNS, "worker A finished everything before it was killed"

        workers.adopt(
            "worker-B", spawn_worker(db_url, "worker-B", ledger_path, lease_ttl=LEASE_TTL)
        )

        async def all_completed() -> bool:
            workers.assert_alive("worker-B")
            return await _completed(store) == RUNS

        await assert_eventually(all_completed, timeout=30)
        assert await workers.terminate("worker-B") == 0, workers.log("worker-B")

        assert await store.count_runs(flow=sample.name) == {RunStatus.COMPLETED.value: RUNS}

        # The provider saw every step of every run take effect exactly once.
        effects: dict[str, list[tuple[str, str, int, str]]] = defaultdict(list)
        for key, run_id, step, calls, worker in EffectLedger(ledger_path).rows():
            effects[run_id].append((key, step, calls, worker))
        assert set(effects) == run_ids
        for run_id, rows in effects.items():
            assert sorted(step for _, step, _, _ in rows) == STEPS, run_id
            assert {key for key, *_ in rows} == {f"{run_id}:{step}:0" for step in STEPS}

        # Only the step each in-flight run was at when A died may have been called twice.
        interrupted = {(run_id, run.step) for run_id, run in in_flight.items()}
        repeated = {
            (run_id, step)
            for run_id, rows in effects.items()
            for _, step, calls, _ in rows
            if calls > 1
        }
        assert repeated <= interrupted

        # Worker B finished each of A's in-flight runs, taking them only after their leases
        # expired, and executed the step each one had been interrupted at.
        for run_id, before in in_flight.items():
            assert before.lease_expires_at is not None
            journal = await store.journal(run_id)
            later = [entry for entry in journal if entry.seq > before.journal_seq]
            assert later, f"run {run_id} got no journal entry after worker A died"
            assert all(entry.at >= before.lease_expires_at for entry in later), run_id
            assert later[-1].kind == JournalKind.RUN_COMPLETED.value
            [(_, _, calls, worker)] = [row for row in effects[run_id] if row[1] == before.step]
            assert worker == "worker-B" or calls > 1, (run_id, before.step, calls, worker)

        # Every journal is gapless, ends with the run's completion and matches the run row.
        for run_id in run_ids:
            run = await store.get_run(run_id)
            journal = await store.journal(run_id)
            assert_gapless(journal)
            assert len(journal) == run.journal_seq
            assert journal[-1].kind == JournalKind.RUN_COMPLETED.value
            completed_steps = [e.step for e in journal if e.kind == JournalKind.STEP_COMPLETED]
            assert sorted(s for s in completed_steps if s is not None) == STEPS, run_id
    finally:
        await store.close()


async def test_a_worker_waiting_for_a_dead_workers_lease_to_expire_does_not_busy_poll(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the only due run is leased by a dead worker, a live worker polls the store about
    once per poll interval, not in a tight loop."""
    flow = Flow("leased.elsewhere")

    async def step(ctx: StepContext) -> None:
        pass

    flow.add_step("only", step)
    store = create_store(db_url)
    await store.open()
    config = EngineConfig(lease_ttl=60.0, heartbeat_interval=20.0, poll_interval=0.05)
    engine = Engine(store, FlowRegistry([flow]), config=config)
    claims = 0
    real_claim = store.claim_runs

    async def counting_claim(
        worker_id: str, flow_keys: Sequence[str], now: float, limit: int, lease_ttl: float
    ) -> list[RunRecord]:
        nonlocal claims
        claims += 1
        return await real_claim(worker_id, flow_keys, now, limit, lease_ttl)

    try:
        run = await engine.start(flow)
        [held] = await store.claim_runs("dead-worker", [flow.key], time.time(), 1, 60.0)
        assert held.id == run.id
        monkeypatch.setattr(store, "claim_runs", counting_claim)
        window = 0.5
        async with engine.running_worker():
            await asyncio.sleep(window)  # the measurement window, not a wait for a condition
        assert claims <= 3 * window / config.poll_interval, f"{claims} claims in {window}s"
    finally:
        await store.close()
