"""Flow models' throughput next to the engine's, in the same run.

One command (from the repository root)::

    python benchmarks/models_throughput.py [--json FILE] [--runs 3000]

Measures a 5-step saga (each step an action with a compensation, no failures), the
event-driven model and the engine's plain 5-step flow on SQLite and PostgreSQL at
concurrency 64, one in-process worker each. The events row is end to end: ``runs * 5``
events of ``runs`` subjects (5 each), committed to the outbox beforehand, then relayed
into one consumer group's inboxes and handled (one checkpoint per event, the handler
updating its per-subject state), timed until the last is handled and the worker stopped.
``--json`` writes ``{"rows": [{system, model, store, concurrency, steps_per_s |
events_per_s, cpu_us}, ...]}``; ``cpu_us`` is this process's CPU time per step or event
(on PostgreSQL the server's own is not in it).

With ``--split`` the events are measured once more, in two parts: the relay alone (every
row moved into the inboxes before any worker starts; model ``events-relay``, rows/s as
``events_per_s``), then the handling alone (model ``events-handle``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.engine_throughput import PG_DB, _ensure_pg_db, tripwright_rate
from tripwright.bus import Event
from tripwright.engine import Engine, EngineConfig, FlowRegistry, RunStatus
from tripwright.engine.store import create_store, upgrade
from tripwright.flows import Saga, SagaContext
from tripwright.flows.events import ConsumerGroup, EventBus, HandlerContext

STEPS = 5


def five_step_saga() -> Saga:
    saga = Saga("bench.saga")

    async def act(ctx: SagaContext) -> int:
        ctx.data["n"] = ctx.data.get("n", 0) + 1
        return int(ctx.data["n"])

    async def undo(ctx: SagaContext) -> None:
        return None

    for i in range(STEPS):
        saga.step(f"s{i}", act, compensate=undo)
    return saga


async def saga_rate(url: str, concurrency: int, runs: int) -> tuple[float, float]:
    """Saga steps/s, and CPU µs per step, of one worker running ``runs`` 5-step sagas."""
    flow = five_step_saga().to_flow()
    store = create_store(url)
    await store.open()
    try:
        config = EngineConfig(max_concurrency=concurrency, claim_batch=concurrency)
        engine = Engine(store, FlowRegistry([flow]), config=config)
        for start in range(0, runs, 1000):
            await engine.start_many(flow, [None] * min(1000, runs - start))
        began, cpu = time.perf_counter(), time.process_time()
        await engine.worker().run_until_idle()
        rate = _rate(runs * STEPS, began, cpu)
        counts = await store.count_runs(flow=flow.name)
        if counts.get(RunStatus.COMPLETED.value) != runs:
            raise RuntimeError(f"not every saga completed: {counts}")
    finally:
        await store.close()
    return rate


class Stepped(Event):
    type_name = "bench.stepped"
    n: int


async def events_rate(
    url: str, concurrency: int, runs: int, *, split: bool = False
) -> dict[str, tuple[float, float]]:
    """Events/s and CPU µs per event, outbox to handled, of one worker and its relay:
    ``runs`` subjects; keyed by model (``events``, or with ``split`` the relay alone and
    the handling alone)."""
    total = runs * STEPS
    done = asyncio.Event()
    handled = 0
    group = ConsumerGroup("bench")

    @group.handler(Stepped)
    async def count(event: Stepped, ctx: HandlerContext) -> None:
        nonlocal handled
        ctx.state["n"] = event.n
        handled += 1
        if handled >= total:
            done.set()

    store = create_store(url)
    await store.open()
    try:
        bus = EventBus(store, [group])
        config = EngineConfig(
            max_concurrency=concurrency, claim_batch=concurrency, poll_interval=0.01
        )
        engine = Engine(store, bus.registry, config=config)
        # Published a chunk at a time, subjects interleaved, so that the benchmark keeps
        # no extra objects alive while it measures.
        order = [(n, s) for n in range(STEPS) for s in range(runs)]
        for start in range(0, total, 1000):
            chunk = order[start : start + 1000]
            await bus.publish_many(
                [Stepped(n=n) for n, _ in chunk], subjects=[f"S{s}" for _, s in chunk]
            )
        del order
        rates: dict[str, tuple[float, float]] = {}
        began, cpu = time.perf_counter(), time.process_time()
        if split:
            while await bus.relay_once():
                pass
            rates["events-relay"] = _rate(total, began, cpu)
            began, cpu = time.perf_counter(), time.process_time()
        async with bus.running(engine, config=config):
            await done.wait()
        rates["events-handle" if split else "events"] = _rate(total, began, cpu)
        mailboxes = sum((await store.count_runs(flow=group.to_flow().name)).values())
        if mailboxes != runs or await store.outbox_count(published=False):
            raise RuntimeError(f"not every event was handled: {mailboxes} mailboxes")
    finally:
        await store.close()
    return rates


def _rate(count: int, began: float, cpu_began: float) -> tuple[float, float]:
    """Per second, and CPU µs each, of ``count`` things done since ``began``."""
    seconds = time.perf_counter() - began
    return count / seconds, (time.process_time() - cpu_began) / count * 1e6


async def measure(runs: int, *, split: bool = False) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    work = Path(tempfile.mkdtemp(prefix="tripwright-models-"))
    models = ("engine", "saga", "events", *(("split",) if split else ()))
    for store in ("sqlite", "postgres"):
        for model in models:
            if store == "sqlite":
                url = f"sqlite:///{work / f'{model}.db'}"
                await asyncio.to_thread(upgrade, url)
            else:
                url = await _ensure_pg_db(PG_DB)
            measured: dict[str, tuple[str, float, float]] = {}
            if model == "engine":
                cpu: list[float] = []
                steps = (await tripwright_rate(url, 64, runs, cpu=cpu))[1]
                measured[model] = ("steps_per_s", steps, cpu[0] / (runs * STEPS) * 1e6)
            elif model == "saga":
                measured[model] = ("steps_per_s", *await saga_rate(url, 64, runs))
            else:
                for name, (per_s, cpu_each) in (
                    await events_rate(url, 64, runs, split=model == "split")
                ).items():
                    measured[name] = ("events_per_s", per_s, cpu_each)
            for name, (unit, rate, cpu_us) in measured.items():
                rows.append(
                    {
                        "system": "tripwright",
                        "model": name,
                        "store": store,
                        "concurrency": 64,
                        unit: rate,
                        "cpu_us": round(cpu_us, 1),
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument(
        "--split", action="store_true", help="also time the events' relay and handling apart"
    )
    args = parser.parse_args()
    rows = asyncio.run(measure(args.runs, split=args.split))
    table = Table(title="Models at concurrency 64 (5 steps a run, 5 events a subject)")
    for column in ("model", "store", "rate", "vs engine steps/s", "CPU µs each"):
        table.add_column(column)
    engine = {r["store"]: float(r["steps_per_s"]) for r in rows if r["model"] == "engine"}  # type: ignore[arg-type]
    for row in rows:
        unit = "events_per_s" if "events_per_s" in row else "steps_per_s"
        rate = float(row[unit])  # type: ignore[arg-type]
        table.add_row(
            str(row["model"]),
            str(row["store"]),
            f"{rate:,.0f} {unit.split('_')[0]}/s",
            f"{rate / engine[str(row['store'])]:.2f}x",
            f"{row['cpu_us']}",
        )
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
