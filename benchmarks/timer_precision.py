"""Durable timers at scale: memory of one worker and how late each timer fires.

One command (from the repository root)::

    python benchmarks/timer_precision.py [--runs 10000] [--store sqlite|postgres] [--json FILE]

Starts ``--runs`` runs that each sleep on a durable timer, with due times spread over
``--spread`` seconds, then lets one worker process them. Reports the worker process's
peak resident memory and the lateness of every timer (the time its run resumed minus its
due time): p50, p99 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.engine_throughput import PG_DB, _ensure_pg_db
from tripwright.engine import (
    Complete,
    Engine,
    EngineConfig,
    Flow,
    FlowRegistry,
    RunStatus,
    Sleep,
    StepContext,
)
from tripwright.engine.store import create_store, upgrade


def timer_flow() -> Flow:
    flow = Flow("bench.timer", version="1")

    @flow.step
    async def wait(ctx: StepContext) -> Sleep:
        return Sleep(until=float(ctx.input["due"]), then="woke")

    @flow.step
    async def woke(ctx: StepContext) -> Complete:
        return Complete({"late": ctx.now - float(ctx.input["due"])})

    return flow


async def measure(store_kind: str, runs: int, lead: float, spread: float) -> dict[str, float]:
    if store_kind == "sqlite":
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='tripwright-timers-')) / 't.db'}"
        await asyncio.to_thread(upgrade, url)
    else:
        url = await _ensure_pg_db(PG_DB)
    flow = timer_flow()
    store = create_store(url)
    await store.open()
    try:
        engine = Engine(store, FlowRegistry([flow]), config=EngineConfig(poll_interval=0.05))
        base = time.time() + lead
        inputs = [{"due": base + spread * i / runs} for i in range(runs)]
        for start in range(0, runs, 1000):
            await engine.start_many(flow, inputs[start : start + 1000])
        stop = asyncio.Event()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        async with engine.running_worker():
            while True:
                await asyncio.sleep(0.5)
                counts = await store.count_runs(flow=flow.name)
                if counts.get(RunStatus.COMPLETED.value, 0) == runs:
                    break
                if time.time() > base + spread + 120:
                    raise RuntimeError(f"timers did not all fire: {counts}")
        stop.set()
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        lates: list[float] = []
        for record in await store.list_runs(flow=flow.name, limit=runs + 10):
            lates.append(float(record.result["late"]))
    finally:
        await store.close()
    lates.sort()
    return {
        "runs": runs,
        "peak_rss_mb": peak_mb,
        "rss_before_worker_mb": rss_before,
        "late_p50_ms": 1000 * statistics.median(lates),
        "late_p99_ms": 1000 * lates[int(0.99 * (len(lates) - 1))],
        "late_max_ms": 1000 * lates[-1],
        "early": float(sum(1 for x in lates if x < 0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--lead", type=float, default=15.0, help="seconds before the first timer")
    parser.add_argument("--spread", type=float, default=30.0, help="seconds the timers span")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(measure(args.store, args.runs, args.lead, args.spread))
    table = Table(title=f"{args.runs} durable timers on {args.store}, one worker")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:,.1f}")
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps({"store": args.store, **result}, indent=2) + "\n")


if __name__ == "__main__":
    main()
