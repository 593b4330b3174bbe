"""The demo job: start runs, SIGKILL the worker mid-way, let a second one finish.

It proves, on a real database and real processes, that a crashed worker loses nothing:
every run completes, each step's effect is applied exactly once at the "provider", and
every journal is gapless.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tripwright.demo.flow import FAILURE_RATE_ENV, LEDGER_ENV, EffectLedger, sample
from tripwright.engine import Engine, FlowRegistry, RunStatus
from tripwright.engine.store import create_store, upgrade

__all__ = ["DemoReport", "check_journals", "run_demo", "spawn_worker"]

FLOWS_REF = "tripwright.demo.flow:flows"


@dataclass
class DemoReport:
    """What the demo observed and checked."""

    runs: int
    completed: int
    steps: int
    effects_applied: int
    repeated_calls: int
    duplicate_effects: int
    journal_gaps: int
    killed_worker_runs: int
    taken_over: int
    takeover_seconds: float | None
    lease_ttl: float
    seconds: float
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.completed == self.runs
            and self.duplicate_effects == 0
            and self.journal_gaps == 0
            and self.effects_applied == self.steps
        )


def spawn_worker(
    db_url: str,
    worker_id: str,
    ledger: Path,
    *,
    lease_ttl: float,
    concurrency: int = 32,
    failure_rate: float = 0.05,
    flows: str = FLOWS_REF,
    broker: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``tripwright worker`` as a separate OS process (``--broker broker`` if given)."""
    env = {
        **os.environ,
        LEDGER_ENV: str(ledger),
        FAILURE_RATE_ENV: str(failure_rate),
        "TRIPWRIGHT_WORKER_ID": worker_id,
    }
    command = [
        sys.executable,
        "-m",
        "tripwright",
        "worker",
        "--db",
        db_url,
        "--flows",
        flows,
        "--id",
        worker_id,
        "--lease-ttl",
        str(lease_ttl),
        "--heartbeat",
        str(max(0.1, lease_ttl / 3)),
        "--concurrency",
        str(concurrency),
        *(["--broker", broker] if broker else []),
    ]
    log = open(ledger.parent / f"{worker_id}.log", "ab")  # noqa: SIM115 - owned by the child
    try:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


async def check_journals(engine: Engine, run_ids: list[str]) -> int:
    """How many runs have a journal whose sequence numbers are not exactly 1..n."""
    gaps = 0
    for run_id in run_ids:
        seqs = [entry.seq for entry in await engine.journal(run_id)]
        if seqs != list(range(1, len(seqs) + 1)):
            gaps += 1
    return gaps


async def run_demo(
    db_url: str,
    work_dir: Path,
    *,
    runs: int = 300,
    kill_fraction: float = 0.35,
    lease_ttl: float = 2.0,
    failure_rate: float = 0.05,
    timeout: float = 300.0,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> DemoReport:
    """Run the demo end to end against ``db_url``; return what it observed."""
    started = time.monotonic()
    ledger_path = work_dir / "provider-ledger.db"
    await asyncio.to_thread(_fresh_ledger, ledger_path)
    await asyncio.to_thread(upgrade, db_url)
    store = create_store(db_url)
    await store.open()
    engine = Engine(store, FlowRegistry([sample]))
    try:
        baseline = (await store.count_runs(flow=sample.name)).get(RunStatus.COMPLETED.value, 0)
        created = await engine.start_many(sample, [{"n": i} for i in range(runs)])
        run_ids = [run.id for run in created]
        ids = set(run_ids)
        progress = on_progress or (lambda phase, done, total: None)

        async def completed() -> int:
            counts = await store.count_runs(flow=sample.name)
            return counts.get(RunStatus.COMPLETED.value, 0) - baseline

        first = spawn_worker(
            db_url, "worker-A", ledger_path, lease_ttl=lease_ttl, failure_rate=failure_rate
        )
        kill_at = max(1, int(runs * kill_fraction))
        deadline = time.monotonic() + timeout
        done = 0
        try:
            while done < kill_at and time.monotonic() < deadline:
                if first.poll() is not None:
                    raise RuntimeError(f"worker A exited early: {_tail(work_dir / 'worker-A.log')}")
                await asyncio.sleep(0.05)
                done = await completed()
                progress("worker A", done, runs)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        killed_at = time.monotonic()
        # What the dead worker held when it died: leased to it and not finished.
        in_flight = [
            rec.id
            for rec in await store.list_runs(flow=sample.name, limit=10 * runs + 1000)
            if rec.id in ids and rec.lease_owner == "worker-A" and not rec.is_terminal
        ]
        progress("worker A killed", done, runs)

        second = spawn_worker(
            db_url, "worker-B", ledger_path, lease_ttl=lease_ttl, failure_rate=failure_rate
        )
        takeover: float | None = None
        try:
            while done < runs and time.monotonic() < deadline:
                if second.poll() is not None:
                    raise RuntimeError(f"worker B exited early: {_tail(work_dir / 'worker-B.log')}")
                await asyncio.sleep(0.05)
                done = await completed()
                if takeover is None and in_flight:
                    owners = {(await store.get_run(i)).lease_owner for i in in_flight[:5]}
                    states = {(await store.get_run(i)).status for i in in_flight[:5]}
                    if "worker-B" in owners or RunStatus.COMPLETED in states:
                        takeover = time.monotonic() - killed_at
                progress("worker B", done, runs)
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(timeout=30)
            except subprocess.TimeoutExpired:
                second.kill()

        effects = EffectLedger(ledger_path).rows()
        per_step: dict[tuple[str, str], int] = {}
        for _key, run_id, step, _calls, _worker in effects:
            per_step[(run_id, step)] = per_step.get((run_id, step), 0) + 1
        taken_over = 0
        for run_id in in_flight:
            if (await store.get_run(run_id)).status is RunStatus.COMPLETED:
                taken_over += 1
        return DemoReport(
            runs=runs,
            completed=done,
            steps=runs * len(sample.steps),
            effects_applied=len(effects),
            repeated_calls=sum(calls - 1 for *_, calls, _w in effects),
            duplicate_effects=sum(n - 1 for n in per_step.values() if n > 1),
            journal_gaps=await check_journals(engine, run_ids),
            killed_worker_runs=len(in_flight),
            taken_over=taken_over,
            takeover_seconds=takeover,
            lease_ttl=lease_ttl,
            seconds=time.monotonic() - started,
            statuses=await store.count_runs(flow=sample.name),
        )
    finally:
        await store.close()


def _fresh_ledger(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    EffectLedger(path)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"
