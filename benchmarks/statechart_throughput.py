"""Statechart throughput: Tripwright's interpreter next to python-statemachine and transitions.

One command (from the repository root)::

    python benchmarks/statechart_throughput.py [--json FILE] [--instances 1000] [--cycles 30]
        [--runs 1000] [--memory-only]

Part (1), in memory: a booking lifecycle (8 states, 10 transitions, one guard) defined the
same way in each library; ``--instances`` machines are started, then each goes round the
lifecycle (quote, hold, pay [guarded], ticket, complete, rebook) ``--cycles`` times, one
event at a time, round robin, in one thread. Each peer runs in its fastest mode found
(transitions: one shared ``Machine``, models added to it, no auto transitions); Tripwright
reuses one ``Event`` object per event name, as a host sending the same event would.
Bytes per idle instance are measured with ``tracemalloc`` over the same number of freshly
started machines.

Part (2), durable (:mod:`benchmarks._statechart_durable`): ``--runs`` machines on SQLite
and on PostgreSQL at concurrency 64, each taking the lifecycle one macrostep (one engine
step, one checkpoint) per event, next to the engine's steps/s measured on the same store
in the same run; and the same with up to ``BATCHED`` queued macrosteps per checkpoint
(``StatechartFlow(chart, macrosteps_per_checkpoint=...)``).

``--json`` writes ``{"rows": [{system, store, concurrency, transitions_per_s}, ...],
"bytes_per_instance": {system: bytes}}``; durable rows also carry
``macrosteps_per_checkpoint``, ``engine_steps_per_s``, ``vs_engine``,
``cpu_us_per_transition`` and
``engine_cpu_us_per_step`` (process CPU of the measured parts). Durable rows (``store``
sqlite/postgres) are added by measurement functions in :data:`MEASUREMENTS`, one per
system and store.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._statechart_durable import durable_rows
from tripwright.flows.statechart import (
    ActionContext,
    Event,
    Interpreter,
    final,
    on,
    state,
    statechart,
)

STATES = ["draft", "quoted", "held", "paid", "ticketed", "completed", "cancelled", "expired"]
# (event, source, target); "pay" carries the one guard
TRANSITIONS = [
    ("quote", "draft", "quoted"),
    ("hold", "quoted", "held"),
    ("pay", "held", "paid"),
    ("expire", "held", "expired"),
    ("ticket", "paid", "ticketed"),
    ("complete", "ticketed", "completed"),
    ("cancel", "quoted", "cancelled"),
    ("cancel", "held", "cancelled"),
    ("refund", "paid", "cancelled"),
    ("rebook", "completed", "draft"),
]
FINAL = {"cancelled", "expired"}
CYCLE = ["quote", "hold", "pay", "ticket", "complete", "rebook"]


@dataclass(frozen=True)
class Sample:
    """One system's figures."""

    system: str
    transitions_per_s: float
    bytes_per_instance: float


# -- Tripwright


def amount_ok(ctx: ActionContext) -> bool:
    return bool(ctx.data["amount"] > 0)


def booking_chart() -> Any:
    by_source: dict[str, list[Any]] = {name: [] for name in STATES}
    for event, source, target in TRANSITIONS:
        cond = amount_ok if event == "pay" else None
        by_source[source].append(on(event, target, cond=cond))
    return statechart(
        "booking",
        *(final(name) if name in FINAL else state(name, *by_source[name]) for name in STATES),
        data={"amount": 120},
    )


def tripwright_factory() -> tuple[Callable[[int], Any], Callable[[Any, str], Any]]:
    chart = booking_chart()
    events = {name: Event(name) for name in CYCLE}

    def make(i: int) -> Interpreter:
        machine = Interpreter(chart, session_id=f"b{i}")
        machine.start()
        return machine

    def fire(machine: Interpreter, name: str) -> Any:
        return machine.send(events[name])

    return make, fire


# -- transitions


def transitions_factory() -> tuple[Callable[[int], Any], Callable[[Any, str], Any]]:
    from transitions import Machine

    class Booking:
        def __init__(self) -> None:
            self.amount = 120

        def amount_ok(self) -> bool:
            return self.amount > 0

    spec = [
        {
            "trigger": event,
            "source": source,
            "dest": target,
            **({"conditions": "amount_ok"} if event == "pay" else {}),
        }
        for event, source, target in TRANSITIONS
    ]

    # Its fastest mode: one machine shared by every model, no auto transitions.
    machine = Machine(
        model=None,
        states=[{"name": name, "final": name in FINAL} for name in STATES],
        transitions=spec,
        initial="draft",
        auto_transitions=False,
    )

    def make(i: int) -> Any:
        model = Booking()
        machine.add_model(model)
        return model

    def fire(model: Any, name: str) -> Any:
        return model.trigger(name)

    return make, fire


# -- python-statemachine


def statemachine_factory() -> tuple[Callable[[int], Any], Callable[[Any, str], Any]]:
    from statemachine import State, StateMachine

    attrs: dict[str, Any] = {
        name: State(name, initial=name == "draft", final=name in FINAL, value=name)
        for name in STATES
    }
    grouped: dict[str, Any] = {}
    for event, source, target in TRANSITIONS:
        kwargs = {"cond": "amount_ok"} if event == "pay" else {}
        t = attrs[source].to(attrs[target], **kwargs)
        grouped[event] = t if event not in grouped else grouped[event] | t
    attrs.update(grouped)
    attrs["amount"] = 120

    def amount_ok(self: Any) -> bool:
        return bool(self.amount > 0)

    attrs["amount_ok"] = amount_ok
    machine_class = type("Booking", (StateMachine,), attrs)

    def make(i: int) -> Any:
        return machine_class()

    def fire(machine: Any, name: str) -> Any:
        return machine.send(name)

    return make, fire


FACTORIES: dict[str, Callable[[], tuple[Callable[[int], Any], Callable[[Any, str], Any]]]] = {
    "tripwright": tripwright_factory,
    "transitions": transitions_factory,
    "python-statemachine": statemachine_factory,
}


def measure_memory(make: Callable[[int], Any], instances: int) -> float:
    """Bytes allocated per started, idle instance (the definition's shared parts excluded)."""
    make(-1)  # compile and warm shared caches first
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    machines = [make(i) for i in range(instances)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    del machines
    return total / instances


def measure_rate(
    make: Callable[[int], Any], fire: Callable[[Any, str], Any], instances: int, cycles: int
) -> float:
    """Transitions per second of ``instances`` machines going round the cycle."""
    machines = [make(i) for i in range(instances)]
    for m in machines:  # warm-up lap
        for name in CYCLE:
            fire(m, name)
    gc.collect()
    began = time.perf_counter()
    for _ in range(cycles):
        for name in CYCLE:
            for m in machines:
                fire(m, name)
    seconds = time.perf_counter() - began
    return instances * cycles * len(CYCLE) / seconds


def check_same_behaviour() -> None:
    """Every system ends the lifecycle in ``completed`` (a sanity check of the setup)."""
    ends = {}
    for system, factory in FACTORIES.items():
        make, fire = factory()
        machine = make(0)
        for name in CYCLE[:-1]:
            fire(machine, name)
        ends[system] = _state_of(system, machine)
    if set(ends.values()) != {"completed"}:
        raise RuntimeError(f"the systems disagree: {ends}")


def _state_of(system: str, machine: Any) -> str:
    if system == "tripwright":
        return str(machine.configuration[-1])
    if system == "transitions":
        return str(machine.state)
    return str(machine.current_state_value)


def measure_memory_rows(instances: int, cycles: int) -> list[Sample]:
    samples = []
    for system, factory in FACTORIES.items():
        make, fire = factory()
        rate = measure_rate(make, fire, instances, cycles)
        size = measure_memory(make, instances)
        samples.append(Sample(system, rate, size))
    return samples


#: Measurements run by this script: each returns rows of the table. Durable ones (stores
#: sqlite and postgres) are appended here by their own functions.
MEASUREMENTS: list[Callable[[argparse.Namespace], list[dict[str, Any]]]] = [
    lambda args: [] if args.memory_only else durable_rows(booking_chart(), args.runs),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--runs", type=int, default=1000, help="durable machines per store")
    parser.add_argument("--memory-only", action="store_true", help="skip the durable rows")
    args = parser.parse_args()
    check_same_behaviour()
    samples = measure_memory_rows(args.instances, args.cycles)
    rows: list[dict[str, Any]] = [
        {
            "system": s.system,
            "store": "memory",
            "concurrency": 1,
            "transitions_per_s": s.transitions_per_s,
        }
        for s in samples
    ]
    for measurement in MEASUREMENTS:
        rows.extend(measurement(args))
    best_peer = max(s.transitions_per_s for s in samples if s.system != "tripwright")
    table = Table(title="Statechart transitions/s (booking lifecycle)")
    for column in ("system", "store", "concurrency", "transitions/s", "vs peer/engine", "bytes"):
        table.add_column(column)
    sizes = {s.system: s.bytes_per_instance for s in samples}
    for row in rows:
        rate = float(row["transitions_per_s"])
        batched = int(row.get("macrosteps_per_checkpoint", 1))
        table.add_row(
            str(row["system"]) + (f" ({batched} per checkpoint)" if batched > 1 else ""),
            str(row["store"]),
            str(row["concurrency"]),
            f"{rate:,.0f}",
            f"{rate / best_peer:.2f}x"
            if row["store"] == "memory"
            else f"{row['vs_engine']:.2f}x engine ({row['engine_steps_per_s']:,.0f} steps/s); "
            f"CPU {row['cpu_us_per_transition']:,.0f} µs/transition, "
            f"{row['engine_cpu_us_per_step']:,.0f} µs/step",
            f"{sizes[row['system']]:,.0f}" if row["store"] == "memory" else "",
        )
    Console().print(table)
    if args.json:
        payload = {"rows": rows, "bytes_per_instance": sizes}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
