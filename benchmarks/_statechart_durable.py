"""Durable rows of ``statechart_throughput.py``: statechart runs on the engine's stores.

Each run is the booking lifecycle of the in-memory part, on the engine: it starts (its
initial transition), then takes ``quote hold pay ticket complete rebook quote cancel``,
events sent to it before the worker starts, each one macrostep in one engine step and one
checkpoint, and ends in the final state ``cancelled``: 9 transitions per run. One
in-process worker at concurrency 64 runs them; the engine's plain 5-step flow is measured
on the same store in the same run (``engine_throughput.tripwright_rate``). A second row per
store runs the same machines with ``macrosteps_per_checkpoint=BATCHED`` (the events already
queued taken as up to that many macrosteps per checkpoint). Each row also
carries the process CPU time (main and store threads) per transition and per engine step
of the measured parts: on a shared machine, a steadier comparison than the rates.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.engine_throughput import PG_DB, STEPS, _ensure_pg_db, tripwright_rate
from tripwright.engine import Engine, EngineConfig, FlowRegistry, RunStatus
from tripwright.engine.store import create_store, upgrade
from tripwright.flows.statechart import Statechart, StatechartFlow

__all__ = ["LIFECYCLE", "durable_rows", "statechart_rate"]

LIFECYCLE = ["quote", "hold", "pay", "ticket", "complete", "rebook", "quote", "cancel"]
#: Transitions per run: the initial one and one per event.
TRANSITIONS = 1 + len(LIFECYCLE)
#: Macrosteps per checkpoint of the second row per store.
BATCHED = 4


async def statechart_rate(
    url: str,
    chart: Statechart,
    concurrency: int,
    runs: int,
    *,
    cpu: list[float] | None = None,
    per_checkpoint: int = 1,
) -> float:
    """Transitions/s of one worker taking ``runs`` machines through the lifecycle (the
    process CPU seconds of the measured part are appended to ``cpu``, if given)."""
    flow = StatechartFlow(chart, macrosteps_per_checkpoint=per_checkpoint)
    store = create_store(url)
    await store.open()
    try:
        config = EngineConfig(
            max_concurrency=concurrency, claim_batch=max(1, concurrency), poll_interval=0.01
        )
        engine = Engine(store, FlowRegistry([flow]), config=config)
        created = []
        for start in range(0, runs, 1000):
            created += await engine.start_many(flow, [None] * min(1000, runs - start))
        for run in created:
            for name in LIFECYCLE:
                await engine.send(run.id, name)
        worker = engine.worker()
        began, cpu_began = time.perf_counter(), time.process_time()
        await worker.run_until_idle()
        seconds = time.perf_counter() - began
        if cpu is not None:
            cpu.append(time.process_time() - cpu_began)
        counts = await store.count_runs(flow=flow.name)
        if counts.get(RunStatus.COMPLETED.value) != runs:
            raise RuntimeError(f"not every machine completed: {counts}")
    finally:
        await store.close()
    return runs * TRANSITIONS / seconds


async def _measure(chart: Statechart, runs: int, concurrency: int) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="tripwright-statechart-bench-"))
    rows: list[dict[str, Any]] = []
    for store in ("sqlite", "postgres"):
        if store == "sqlite":
            urls = [f"sqlite:///{work / 'engine'}.db", ""]
            await asyncio.to_thread(upgrade, urls[0])
        else:
            urls = [await _ensure_pg_db(PG_DB), ""]
        engine_cpu: list[float] = []
        _, steps = await tripwright_rate(urls[0], concurrency, runs, cpu=engine_cpu)
        for per_checkpoint in (1, BATCHED):
            if store == "postgres":
                urls[1] = await _ensure_pg_db(PG_DB)  # emptied again
            else:
                urls[1] = f"sqlite:///{work / f'chart-{per_checkpoint}'}.db"
                await asyncio.to_thread(upgrade, urls[1])
            cpu: list[float] = []
            rate = await statechart_rate(
                urls[1], chart, concurrency, runs, cpu=cpu, per_checkpoint=per_checkpoint
            )
            rows.append(
                {
                    "system": "tripwright",
                    "store": store,
                    "concurrency": concurrency,
                    "macrosteps_per_checkpoint": per_checkpoint,
                    "transitions_per_s": rate,
                    "engine_steps_per_s": steps,
                    "vs_engine": rate / steps,
                    "cpu_us_per_transition": cpu[0] * 1e6 / (runs * TRANSITIONS),
                    "engine_cpu_us_per_step": engine_cpu[0] * 1e6 / (runs * STEPS),
                }
            )
    return rows


def durable_rows(chart: Statechart, runs: int, concurrency: int = 64) -> list[dict[str, Any]]:
    """The durable rows (sqlite, postgres) with the engine's step rate next to each."""
    return asyncio.run(_measure(chart, runs, concurrency))
