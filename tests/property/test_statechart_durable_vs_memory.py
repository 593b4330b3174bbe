"""Durable statechart runs behave exactly like in-memory ones, crashes or not.

Hypothesis draws a random statechart and a random script of external events, clock
advances and worker crashes (the worker dies just before or just after one of its next
checkpoints; another worker takes over once the lease expires). With several macrosteps
per checkpoint, consecutive sends are queued before the worker runs, so that checkpoints
hold several macrosteps and crashes fall before and after such checkpoints. The script is played
against a durable run on the engine (a virtual clock, a real store) and the events, at
the times they were really sent, against the in-memory runner. Both must end in the same
configuration with the same datamodel, having taken the same transitions and written the
same log entries and errors, in the same order.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.helpers import assert_gapless, drive
from tests.property.random_charts import Op, charts, scripts
from tripwright.engine import (
    Checkpoint,
    Engine,
    EngineConfig,
    FlowRegistry,
    JournalEntry,
    RunStatus,
    VirtualClock,
    Worker,
)
from tripwright.engine.store import create_store, upgrade
from tripwright.flows.statechart import (
    ErrorEntry,
    LogEntry,
    MachineRunner,
    Statechart,
    StatechartFlow,
)

CONFIG = EngineConfig(lease_ttl=10.0, heartbeat_interval=3.0, poll_interval=0.01)
SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
_names = itertools.count()


class Crash(BaseException):
    """Stands for the worker process dying."""


class Script:
    """Plays a script against a durable run, with crashes, and records what was sent."""

    def __init__(self, engine: Engine, clock: VirtualClock, *, bursts: bool = False) -> None:
        self.engine = engine
        self.bursts = bursts
        self.clock = clock
        self.worker = self._new_worker()
        self.sent: list[tuple[float, str, Any]] = []
        self.crashes = 0

    def _new_worker(self) -> Worker:
        return self.engine.worker(worker_id=f"worker-{next(_names)}")

    def arm(self, when: str, nth: int) -> None:
        """The current worker dies just before (or after) its ``nth`` next checkpoint."""
        worker = self.worker
        commit = worker.committer.commit
        left = [nth]

        async def dying_commit(checkpoint: Checkpoint) -> None:
            left[0] -= 1
            if left[0] == 0 and when == "before":
                worker.abort()
                raise Crash
            await commit(checkpoint)
            if left[0] == 0:
                worker.abort()
                raise Crash

        worker.committer.commit = dying_commit  # type: ignore[method-assign]

    async def run_worker(self) -> None:
        """Run until idle; a crashed worker is replaced once its leases have expired."""
        while True:
            try:
                await drive(self.worker, self.clock)
                return
            except Crash:
                self.crashes += 1
                leftovers = asyncio.all_tasks() - {asyncio.current_task()}
                if leftovers:
                    await asyncio.wait(leftovers, timeout=5)
                await self.clock.advance(CONFIG.lease_ttl + 1)
                self.worker = self._new_worker()

    async def play(self, run_id: str, ops: list[Op]) -> None:
        for op, following in zip(ops, [*ops[1:], None], strict=True):
            if (await self.engine.get(run_id)).is_terminal:
                break
            if op[0] == "send":
                self.sent.append((self.clock.now(), op[1], op[2]))
                await self.engine.send(run_id, op[1], op[2])
                if self.bursts and following is not None and following[0] == "send":
                    continue  # queued behind the next send
            elif op[0] == "advance":
                await self.clock.advance(op[1])
            else:
                self.arm(op[1], op[2])
                continue
            await self.run_worker()
        await self.run_worker()


def _transitions(journal: list[JournalEntry]) -> list[tuple[list[str], list[str], str | None]]:
    return [
        (e.data["source"], e.data["target"], (e.data["event"] or {}).get("name"))
        for e in journal
        if e.kind == "transition" and not e.data.get("ignored")
    ]


def _notes(journal: list[JournalEntry]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for e in journal:
        if e.kind != "note":
            continue
        if e.data["message"] == "log":
            out.append(("log", e.data["label"], e.data["value"]))
        elif "error" in e.data:
            out.append((e.data["message"], e.data["error"], e.data["state"]))
    return out


def _memory_notes(runner: MachineRunner) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for o in runner.outputs:
        if isinstance(o, LogEntry):
            out.append(("log", o.label, o.value))
        elif isinstance(o, ErrorEntry):
            out.append((o.event, o.message, o.state))
    return out


async def _compare(url: str, chart: Statechart, ops: list[Op], per_checkpoint: int) -> None:
    store = create_store(url)
    await store.open()
    clock = VirtualClock()
    flow = StatechartFlow(chart, macrosteps_per_checkpoint=per_checkpoint)
    engine = Engine(store, FlowRegistry([flow]), clock=clock, config=CONFIG)
    try:
        run = await engine.start(chart.name)
        start = clock.now()
        script = Script(engine, clock, bursts=per_checkpoint > 1)
        await script.run_worker()
        await script.play(run.id, ops)
        durable = await engine.get(run.id)
        journal = await engine.journal(run.id)
    finally:
        await store.close()

    memory = MachineRunner(chart, session_id=run.id, start=start)
    memory.start()
    for at, name, data in script.sent:
        if memory.terminated:
            break
        memory.advance_to(at)
        if not memory.terminated:
            memory.send(name, data)
    memory.advance_to(clock.now())

    assert_gapless(journal)
    assert durable.status is not RunStatus.FAILED, durable.error
    assert (durable.status is RunStatus.COMPLETED) == memory.terminated
    assert durable.context["configuration"] == list(memory.configuration)
    assert durable.context["statechart"]["snapshot"]["datamodel"] == memory.datamodel
    expected = [
        (list(m.source), list(m.target), m.event.name if m.event else None)
        for m in memory.transitions
    ]
    assert _transitions(journal) == expected
    assert _notes(journal) == _memory_notes(memory)
    event(f"crashes: {min(script.crashes, 2)}")
    within = sum(  # received after a macrostep of the same step
        1
        for a, b in itertools.pairwise(journal)
        if b.kind == "event_received" and a.kind in ("transition", "note")
    )
    event(f"macrosteps received within a checkpoint: {min(within, 2)}")
    event("terminated" if memory.terminated else "still running")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "per_checkpoint", "examples"),
    [
        ("sqlite", 1, 60),
        ("sqlite", 4, 40),
        pytest.param("postgres", 1, 20, marks=pytest.mark.postgres),
        pytest.param("postgres", 4, 15, marks=pytest.mark.postgres),
    ],
)
def test_durable_runs_match_in_memory_runs_under_crashes(
    kind: str, per_checkpoint: int, examples: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A durable run, crashed between checkpoints at random (of one macrostep each, or of
    up to ``per_checkpoint`` queued ones), takes the same transitions, writes the same
    logs and ends in the same configuration and datamodel as in memory."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'property.db'}"
        upgrade(url)
    else:
        url = str(request.getfixturevalue("pg_url"))

    @settings(SETTINGS, max_examples=examples)
    @given(data=st.data(), ops=scripts())
    def check(data: st.DataObject, ops: list[Op]) -> None:
        chart = data.draw(charts(name=f"random-{next(_names)}"))
        asyncio.run(_compare(url, chart, ops, per_checkpoint))

    check()
