"""Engine throughput: a 5-step durable flow on Tripwright, DBOS Transact, and the limits.

One command (from the repository root)::

    python benchmarks/engine_throughput.py [--json FILE] [--quick]

In one run it measures, on this machine:

* Tripwright: a 5-step durable flow on SQLite and PostgreSQL at concurrency 1 and 64;
* DBOS Transact (``pip install -e '.[bench]'``): the same 5-step workflow on the same
  PostgreSQL server and on SQLite, each in its own process;
* the physical limits (system ``limit``): single-row UPDATE+COMMIT transactions/s on the
  same PostgreSQL at 1 and 8 connections, and single-row commits/s on SQLite in WAL mode
  with the synchronous setting Tripwright uses (FULL). Limit rows report transactions/s in
  ``steps_per_s`` so every row compares on one field.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import asyncpg
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._limits import pg_commit_rate, sqlite_commit_rate
from tripwright.engine import (
    Engine,
    EngineConfig,
    Flow,
    FlowRegistry,
    RunStatus,
    StepContext,
)
from tripwright.engine.store import create_store, upgrade

PG_BASE = "postgresql://postgres@127.0.0.1:5432"
PG_DB = "tripwright_bench"
STEPS = 5


@dataclass
class Row:
    system: str
    store: str
    concurrency: int
    runs_per_s: float | None
    steps_per_s: float | None
    note: str = ""


def five_step_flow() -> Flow:
    flow = Flow("bench.five", version="1")

    async def bump(ctx: StepContext) -> None:
        ctx.context["n"] = ctx.context.get("n", 0) + 1

    for i in range(STEPS):
        flow.add_step(f"s{i}", bump)
    return flow


async def _ensure_pg_db(name: str) -> str:
    admin = await asyncpg.connect(f"{PG_BASE}/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"{PG_BASE}/{name}"
    await asyncio.to_thread(upgrade, url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE runs, journal, run_events, outbox RESTART IDENTITY")
        await conn.execute("VACUUM ANALYZE runs")
    finally:
        await conn.close()
    return url


async def tripwright_rate(
    url: str, concurrency: int, runs: int, *, cpu: list[float] | None = None
) -> tuple[float, float]:
    """Runs/s and steps/s of one in-process worker executing ``runs`` 5-step runs (the
    process CPU seconds of the measured part are appended to ``cpu``, if given)."""
    flow = five_step_flow()
    store = create_store(url)
    await store.open()
    try:
        config = EngineConfig(
            max_concurrency=concurrency, claim_batch=max(1, concurrency), poll_interval=0.01
        )
        engine = Engine(store, FlowRegistry([flow]), config=config)
        for start in range(0, runs, 1000):
            await engine.start_many(flow, [None] * min(1000, runs - start))
        worker = engine.worker()
        began, cpu_began = time.perf_counter(), time.process_time()
        await worker.run_until_idle()
        seconds = time.perf_counter() - began
        if cpu is not None:
            cpu.append(time.process_time() - cpu_began)
        counts = await store.count_runs(flow=flow.name)
        if counts.get(RunStatus.COMPLETED.value) != runs:
            raise RuntimeError(f"not every run completed: {counts}")
    finally:
        await store.close()
    return runs / seconds, runs * STEPS / seconds


def dbos_rate(store: str, concurrency: int, runs: int, work: Path) -> Row:
    if importlib.util.find_spec("dbos") is None:
        return Row(
            "dbos", store, concurrency, None, None, "not installed: pip install -e '.[bench]'"
        )
    command = [
        sys.executable,
        str(Path(__file__).with_name("_dbos_peer.py")),
        "--store",
        store,
        "--runs",
        str(runs),
        "--concurrency",
        str(concurrency),
    ]
    if store == "sqlite":
        command += ["--url", f"sqlite:///{work / 'dbos.sqlite'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        return Row("dbos", store, concurrency, None, None, f"failed: {done.stderr[-300:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return Row("dbos", store, concurrency, data["runs_per_s"], data["steps_per_s"])


async def measure(quick: bool, limit_seconds: float) -> list[Row]:
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="tripwright-bench-"))
    many = 600 if quick else 3000
    few = 100 if quick else 300

    for concurrency, runs in ((1, few), (64, many)):
        url = f"sqlite:///{work / f'tw-{concurrency}.db'}"
        await asyncio.to_thread(upgrade, url)
        r, s = await tripwright_rate(url, concurrency, runs)
        rows.append(Row("tripwright", "sqlite", concurrency, r, s))
        url = await _ensure_pg_db(PG_DB)
        r, s = await tripwright_rate(url, concurrency, runs)
        rows.append(Row("tripwright", "postgres", concurrency, r, s))

    for concurrency, runs in ((1, 50 if quick else 100), (64, 200 if quick else 400)):
        rows.append(await asyncio.to_thread(dbos_rate, "postgres", concurrency, runs, work))
        rows.append(await asyncio.to_thread(dbos_rate, "sqlite", concurrency, runs, work))

    limit_url = await _ensure_pg_db(PG_DB)
    for connections in (1, 8):
        tps = await pg_commit_rate(limit_url, connections, limit_seconds)
        rows.append(Row("limit", "postgres", connections, None, tps, "single-row UPDATE+COMMIT"))
    tps = await asyncio.to_thread(sqlite_commit_rate, str(work / "limit.db"), "FULL", limit_seconds)
    rows.append(Row("limit", "sqlite", 1, None, tps, "single-row commit, WAL, synchronous=FULL"))
    return rows


def ratios(rows: list[Row]) -> dict[str, float]:
    def get(system: str, store: str, c: int) -> float | None:
        for row in rows:
            if (row.system, row.store, row.concurrency) == (system, store, c):
                return row.steps_per_s
        return None

    out: dict[str, float] = {}
    pairs = {
        "pg c64 / dbos pg c64": (("tripwright", "postgres", 64), ("dbos", "postgres", 64)),
        "pg c64 / limit pg 8 conns": (("tripwright", "postgres", 64), ("limit", "postgres", 8)),
        "pg c1 / limit pg 1 conn": (("tripwright", "postgres", 1), ("limit", "postgres", 1)),
        "sqlite c64 / limit sqlite": (("tripwright", "sqlite", 64), ("limit", "sqlite", 1)),
        "sqlite c64 / dbos sqlite c64": (("tripwright", "sqlite", 64), ("dbos", "sqlite", 64)),
    }
    for name, (a, b) in pairs.items():
        x, y = get(*a), get(*b)
        if x and y:
            out[name] = x / y
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the rows to this file")
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    parser.add_argument("--limit-seconds", type=float, default=3.0)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.quick, args.limit_seconds))
    table = Table(title="Engine throughput (5-step durable flow)")
    for column in ("system", "store", "concurrency", "runs/s", "steps/s", "note"):
        table.add_column(column, justify="right" if "/" in column else "left")
    for row in rows:
        table.add_row(
            row.system,
            row.store,
            str(row.concurrency),
            "-" if row.runs_per_s is None else f"{row.runs_per_s:,.0f}",
            "-" if row.steps_per_s is None else f"{row.steps_per_s:,.0f}",
            row.note,
        )
    console = Console()
    console.print(table)
    computed = ratios(rows)
    for name, value in computed.items():
        console.print(f"{name}: {value:.2f}x")
    if args.json:
        fields = ("system", "store", "concurrency", "runs_per_s", "steps_per_s")
        document = {
            "rows": [{k: asdict(r)[k] for k in fields} for r in rows],
            "notes": {f"{r.system}/{r.store}/{r.concurrency}": r.note for r in rows if r.note},
            "ratios": computed,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
