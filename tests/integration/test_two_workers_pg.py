"""Two real ``tripwright worker`` processes share one PostgreSQL database at the same time.

The flow (:mod:`tests.integration.overlap_flows`) records every step execution, with the
worker and its start and end times, in a table of the test, so that the test can check
that the two workers split the work without ever running the same run at once.

The last two tests pin, deterministically and in-process, a worker heartbeat race that the
two-process test can only hit by chance (an execution cut off by a spurious lease loss, or a
run held forever when the cut-off task had not started yet).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import assert_eventually, assert_gapless
from tests.integration.overlap_flows import (
    CREATE_TABLE,
    DSN_ENV,
    STEPS,
    TABLE,
    WORKER_ENV,
    overlap,
)
from tests.integration.processes import WorkerProcesses
from tripwright.engine import (
    Checkpoint,
    Engine,
    EngineConfig,
    Flow,
    FlowRegistry,
    JournalKind,
    RetryPolicy,
    RunRecord,
    RunStatus,
    StepContext,
)
from tripwright.engine.store import Store, create_store

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FLOWS_REF = "tests.integration.overlap_flows:flows"
RUNS = 300
LEASE_TTL = 3.0
WORKER_IDS = ("worker-1", "worker-2")


@dataclass(frozen=True, slots=True)
class Execution:
    """One execution of one step, as the step itself recorded it."""

    run_id: str
    step: str
    attempt: int
    worker: str
    started: float
    ended: float
    outcome: str

    def overlaps(self, other: Execution) -> bool:
        return self.started < other.ended and other.started < self.ended


def spawn(workers: WorkerProcesses, db_url: str, worker_id: str) -> None:
    """Start a ``tripwright worker`` serving the overlap flow, importable from the repo."""
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, DSN_ENV: db_url, WORKER_ENV: worker_id}
    command = [
        sys.executable,
        "-m",
        "tripwright",
        "worker",
        "--db",
        db_url,
        "--flows",
        FLOWS_REF,
        "--id",
        worker_id,
        "--lease-ttl",
        str(LEASE_TTL),
        "--heartbeat",
        str(LEASE_TTL / 3),
        "--concurrency",
        "32",
    ]
    with (workers.directory / f"{worker_id}.log").open("ab") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    workers.adopt(worker_id, proc)


@pytest.fixture
async def db_url(clean_pg_url: str) -> AsyncIterator[str]:
    """The emptied PostgreSQL test database, with an empty step-execution table."""
    conn = await asyncpg.connect(clean_pg_url)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await conn.execute(CREATE_TABLE)
        yield clean_pg_url
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await conn.close()


async def _executions(db_url: str) -> list[Execution]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            f"SELECT run_id, step, attempt, worker, started, ended, outcome FROM {TABLE} "
            "ORDER BY started"
        )
    finally:
        await conn.close()
    return [Execution(*row) for row in rows]


async def test_two_workers_split_the_runs_and_never_execute_one_run_at_the_same_time(
    db_url: str, workers: WorkerProcesses
) -> None:
    """Two worker processes on one PostgreSQL database complete every run between them, and
    no run ever has step executions by different workers (or of one step) overlapping in time."""
    for worker_id in WORKER_IDS:
        spawn(workers, db_url, worker_id)

    async def both_serving() -> bool:
        workers.assert_alive()
        return all(f"worker {w} serving" in workers.log(w, tail=10**6) for w in WORKER_IDS)

    await assert_eventually(both_serving, timeout=20, interval=0.05)

    store = create_store(db_url)
    await store.open()
    engine = Engine(store, FlowRegistry([overlap]))
    try:
        created = await engine.start_many(overlap, [{"n": i} for i in range(RUNS)])
        run_ids = {run.id for run in created}

        async def all_done() -> bool:
            workers.assert_alive()
            counts = await store.count_runs(flow=overlap.name)
            return counts.get(RunStatus.COMPLETED.value, 0) + counts.get(
                RunStatus.FAILED.value, 0
            ) == len(run_ids)

        await assert_eventually(all_done, timeout=60, interval=0.05)
        codes = await workers.terminate_all()
        assert codes == dict.fromkeys(WORKER_IDS, 0), {w: workers.log(w) for w in WORKER_IDS}

        assert await store.count_runs(flow=overlap.name) == {RunStatus.COMPLETED.value: RUNS}

        executions = await _executions(db_url)
        by_run: dict[str, list[Execution]] = defaultdict(list)
        for execution in executions:
            by_run[execution.run_id].append(execution)
        assert set(by_run) == run_ids

        # The work was split, and the two workers were busy at the same time.
        runs_of = {w: {e.run_id for e in executions if e.worker == w} for w in WORKER_IDS}
        assert all(runs_of.values()), {w: len(r) for w, r in runs_of.items()}
        busy = {
            w: (
                min(e.started for e in executions if e.worker == w),
                max(e.ended for e in executions if e.worker == w),
            )
            for w in WORKER_IDS
        }
        assert max(start for start, _ in busy.values()) < min(end for _, end in busy.values())
        hopped = [r for r, execs in by_run.items() if len({e.worker for e in execs}) > 1]
        assert hopped, "no run was executed by both workers (retries should move some)"

        # No run was executed by two workers at once, nor one of its steps twice at once.
        cross_worker = [
            (a, b)
            for execs in by_run.values()
            for a, b in combinations(execs, 2)
            if a.worker != b.worker and a.overlaps(b)
        ]
        assert cross_worker == []
        same_step = [
            (a, b)
            for execs in by_run.values()
            for a, b in combinations(execs, 2)
            if a.step == b.step and a.overlaps(b)
        ]
        assert same_step == []
        concurrent = [
            (a, b) for execs in by_run.values() for a, b in combinations(execs, 2) if a.overlaps(b)
        ]
        assert concurrent == [], "a run had two step executions at once"

        # Without crashes or lost leases, every step succeeded exactly once, none was cut off
        # (an interrupted one with "lease of run ... lost" in a worker log would point at the
        # heartbeat race tested below).
        interrupted = [e for e in executions if e.outcome == "interrupted"]
        assert interrupted == [], {w: workers.log(w) for w in WORKER_IDS}
        ok = Counter((e.run_id, e.step) for e in executions if e.outcome == "ok")
        assert ok == Counter({(run_id, step): 1 for run_id in run_ids for step in STEPS})

        # Every journal is gapless, and agrees with what the steps recorded.
        for run_id in run_ids:
            journal = await store.journal(run_id)
            assert_gapless(journal)
            assert journal[-1].kind == JournalKind.RUN_COMPLETED.value
            kinds = Counter(entry.kind for entry in journal)
            assert kinds[JournalKind.STEP_COMPLETED.value] == len(STEPS), run_id
            failed = sum(e.outcome == "failed" for e in by_run[run_id])
            assert kinds[JournalKind.ATTEMPT_FAILED.value] == failed, run_id
    finally:
        await store.close()


class HeartbeatRace:
    """Forces one interleaving on a worker's store: a run's attempt fails and its lease is
    released, the worker's heartbeat query runs (the run is not held at that instant), the
    worker claims the run again, and only then does the heartbeat reply arrive.

    With ``before_start`` the reply arrives before the new execution's task first runs,
    otherwise once its step has started.
    """

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch, *, before_start: bool):
        self.before_start = before_start
        self.first_may_fail = asyncio.Event()
        self.released = asyncio.Event()
        self.beat_done = asyncio.Event()
        self.reclaimed = asyncio.Event()
        self.second_started = asyncio.Event()
        self._commit, self._claim, self._heartbeat = store.commit, store.claim_runs, store.heartbeat
        monkeypatch.setattr(store, "commit", self.commit)
        monkeypatch.setattr(store, "claim_runs", self.claim_runs)
        monkeypatch.setattr(store, "heartbeat", self.heartbeat)

    def flow(self) -> Flow:
        """One step: attempt 1 fails when told to (retried at once), attempt 2 takes 0.2 s."""
        flow = Flow("heartbeat.race")

        async def flaky(ctx: StepContext) -> None:
            if ctx.attempt == 1:
                await self.first_may_fail.wait()
                raise RuntimeError("transient")
            self.second_started.set()
            await asyncio.sleep(0.2)

        flow.add_step("flaky", flaky, retry=RetryPolicy(max_attempts=3, initial_interval=0.0))
        return flow

    async def commit(self, checkpoints: Sequence[Checkpoint]) -> list[bool]:
        outcome = await self._commit(checkpoints)
        if any(cp.release for cp in checkpoints):
            self.released.set()
        return outcome

    async def claim_runs(
        self, worker_id: str, flow_keys: Sequence[str], now: float, limit: int, lease_ttl: float
    ) -> list[RunRecord]:
        if self.first_may_fail.is_set():  # claim again only after the heartbeat query ran
            await self.beat_done.wait()
        runs = await self._claim(worker_id, flow_keys, now, limit, lease_ttl)
        if runs and self.beat_done.is_set():
            self.reclaimed.set()
        return runs

    async def heartbeat(
        self, worker_id: str, run_ids: Sequence[str], now: float, lease_ttl: float
    ) -> set[str]:
        if self.beat_done.is_set() or not run_ids:
            return await self._heartbeat(worker_id, run_ids, now, lease_ttl)
        self.first_may_fail.set()  # attempt 1 fails; its checkpoint releases the run
        await self.released.wait()
        held = await self._heartbeat(worker_id, run_ids, now, lease_ttl)  # run not held now
        self.beat_done.set()
        # The worker claims the run again; the reply arrives before or after its new task runs.
        await (self.reclaimed if self.before_start else self.second_started).wait()
        return held


async def test_a_heartbeat_racing_a_release_and_reclaim_does_not_cancel_the_new_execution(
    clean_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run released (retry) and re-claimed by the same worker during a heartbeat query is
    not treated as a lost lease: its new execution runs on and the run completes."""
    store = create_store(clean_pg_url)
    await store.open()
    race = HeartbeatRace(store, monkeypatch, before_start=False)
    config = EngineConfig(lease_ttl=30.0, heartbeat_interval=0.05, poll_interval=0.01)
    engine = Engine(store, FlowRegistry([race.flow()]), config=config)
    try:
        run = await engine.start("heartbeat.race")
        async with engine.running_worker() as worker:
            async with asyncio.timeout(10):  # the interleaving did happen
                await race.second_started.wait()
            try:
                done = await engine.wait(run.id, timeout=2)
            except TimeoutError:
                stuck = await store.get_run(run.id)
                raise AssertionError(
                    f"run not completed: leases_lost={worker.stats.leases_lost}, "
                    f"lease_owner={stuck.lease_owner}, active={worker.active_runs}"
                ) from None
        assert done.status is RunStatus.COMPLETED
        assert worker.stats.leases_lost == 0
    finally:
        await store.close()


async def test_a_run_whose_task_is_cancelled_before_it_starts_is_not_held_forever(
    clean_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the spurious lease loss above cancels the new task before it starts, the worker
    still lets go of the run, so it completes within a few lease TTLs."""
    store = create_store(clean_pg_url)
    await store.open()
    race = HeartbeatRace(store, monkeypatch, before_start=True)
    config = EngineConfig(lease_ttl=0.5, heartbeat_interval=0.1, poll_interval=0.01)
    engine = Engine(store, FlowRegistry([race.flow()]), config=config)
    try:
        run = await engine.start("heartbeat.race")
        async with engine.running_worker() as worker:
            async with asyncio.timeout(10):  # the interleaving did happen
                await race.reclaimed.wait()
            try:
                done = await engine.wait(run.id, timeout=5 * config.lease_ttl)
            except TimeoutError:
                stuck = await store.get_run(run.id)
                raise AssertionError(
                    f"run held for {5 * config.lease_ttl}s (lease TTL {config.lease_ttl}s): "
                    f"lease_owner={stuck.lease_owner}, active={worker.active_runs}"
                ) from None
        assert done.status is RunStatus.COMPLETED
        assert worker.active_runs == []
    finally:
        await store.close()
