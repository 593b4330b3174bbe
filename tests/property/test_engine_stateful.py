"""A stateful property test of the engine under faults, on every store.

A Hypothesis ``RuleBasedStateMachine`` drives a three-step booking flow on a virtual clock
and interleaves, at random: starting runs; arming faults for upcoming step calls (a
retryable provider error, a hang past the step's timeout, a slow call, a crash before the
provider call, and a crash after the provider applied the effect but before the step
returned, so that the checkpoint never commits); running the current worker until idle
(a crash kills it, and a new worker with another id takes over once the dead one's leases
expire); and moving the virtual clock by random amounts.

The test keeps its own ledger of the provider's side effects. After every rule: each
run's journal is numbered exactly 1..n, each step of each run only ever used one
idempotency key, and no effect was applied twice. At the end, with the faults disarmed,
every run settles as completed with each of its steps' effects applied exactly once.

Hypothesis has no async rules, so the machine owns an event loop and runs each rule body
with ``loop.run_until_complete``.

Two engine bugs this machine found have regression tests at the end of the file: a
crashed (aborted) worker's in-flight step went on running under ``VirtualClock`` and
applied its effect; and a stale execution of a run that the same worker re-claimed dropped
the new execution from the worker's active runs.
"""

from __future__ import annotations

import asyncio
import enum
import sys
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.helpers import assert_eventually, assert_gapless, drive
from tests.property.machines import (
    STATEFUL,
    Crash,
    StoreMachine,
    bury_the_dead,
    on_backend,
)
from tripwright.engine import (
    Checkpoint,
    Engine,
    EngineConfig,
    Flow,
    FlowRegistry,
    JournalKind,
    RetryPolicy,
    RunStatus,
    StepContext,
    VirtualClock,
    Worker,
)

T = TypeVar("T")

STEPS = ("reserve", "charge", "notify")
CONFIG = EngineConfig(lease_ttl=10.0, heartbeat_interval=3.0, poll_interval=0.01)
STEP_COUNT = 25
#: Each step's timeout; shorter than the lease TTL, as ``run_until_idle`` sends no heartbeat.
STEP_TIMEOUT = 5.0
#: A slow provider call: it finishes well within the step timeout.
SLOW_CALL = 2.0
#: A hung provider call: far past the step timeout.
HANG = 60.0
#: More attempts than a whole example has rules, so armed faults can never exhaust them.
RETRY = RetryPolicy(
    max_attempts=STEP_COUNT + 5,
    initial_interval=0.5,
    backoff_coefficient=2.0,
    max_interval=2.0,
    jitter=False,
)
MIN_RUNS = 2
MAX_RUNS = 6
SETTLE_ROUNDS = 100
BASE_SETTINGS = settings(STATEFUL, max_examples=40, stateful_step_count=STEP_COUNT)


class FaultKind(enum.Enum):
    """What goes wrong in a step call."""

    FAIL = "retryable provider error"
    TIMEOUT = "hang past the step timeout"
    SLOW = "slow provider call"
    CRASH_BEFORE = "crash before the side effect"
    CRASH_AFTER = "crash after the side effect, before the checkpoint"


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault armed for the next call of ``step`` (of any step if None)."""

    kind: FaultKind
    step: str | None


class EngineMachine(StoreMachine):
    """Runs of a three-step flow under armed faults, crashes, workers and clock jumps."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock()
        self.engine = Engine(
            self.store, FlowRegistry([self._flow()]), clock=self.clock, config=CONFIG
        )
        self.generation = 0
        self.worker = self._new_worker()
        self.runs: list[str] = []
        self.faults: list[Fault] = []
        # The effect ledger: keys each (run, step) used, calls the provider got per key,
        # and effects it applied per key (only on the first call with a key).
        self.keys_used: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        self.calls: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()
        self.booked: Counter[tuple[str, str]] = Counter()

    # -- plumbing ---------------------------------------------------------------------
    def _flow(self) -> Flow:
        flow = Flow("booking", version="1")
        for name in STEPS:
            flow.add_step(name, self._action, retry=RETRY, timeout=STEP_TIMEOUT)
        return flow

    def _new_worker(self) -> Worker:
        self.generation += 1
        return self.engine.worker(worker_id=f"worker-{self.generation}")

    def _take_fault(self, step: str) -> Fault | None:
        for index, fault in enumerate(self.faults):
            if fault.step in (None, step):
                return self.faults.pop(index)
        return None

    async def _action(self, ctx: StepContext) -> None:
        """Every step makes one provider call keyed by its idempotency key."""
        fault = self._take_fault(ctx.step)
        kind = fault.kind if fault is not None else None
        key = ctx.idempotency_key
        self.keys_used[(ctx.run_id, ctx.step)].add(key)
        if kind is FaultKind.FAIL:
            raise ConnectionError("provider unreachable")
        if kind is FaultKind.CRASH_BEFORE:
            raise Crash("before the side effect")
        if kind is FaultKind.TIMEOUT:
            await ctx.clock.sleep(HANG)
        elif kind is FaultKind.SLOW:
            await ctx.clock.sleep(SLOW_CALL)
        self._provider(ctx.run_id, ctx.step, key)
        if kind is FaultKind.CRASH_AFTER:
            raise Crash("after the side effect")

    def _provider(self, run_id: str, step: str, key: str) -> None:
        """An idempotent provider: it applies an effect only the first time it sees a key."""
        self.calls[key] += 1
        if self.calls[key] == 1:
            self.applied[key] += 1
            self.booked[(run_id, step)] += 1
        else:
            event("provider saw a key again (re-execution after a crash or a hang)")

    # -- rules ------------------------------------------------------------------------
    @initialize()
    def start_first_runs(self) -> None:
        """Start the first runs."""
        for _ in range(MIN_RUNS):
            self._start()

    @precondition(lambda self: len(self.runs) < MAX_RUNS)
    @rule()
    def start_run(self) -> None:
        """Start one more run."""
        self._start()

    def _start(self) -> None:
        run = self._run(self.engine.start("booking", {"n": len(self.runs)}))
        self.runs.append(run.id)

    @rule(kind=st.sampled_from(FaultKind), step=st.sampled_from((None, *STEPS)))
    def arm_fault(self, kind: FaultKind, step: str | None) -> None:
        """Arm a fault for the next call of a step (of any step if None)."""
        self.faults.append(Fault(kind, step))

    @rule()
    def run_worker(self) -> None:
        """Run the current worker until idle; if it crashes, a new worker replaces it."""
        try:
            self._run(drive(self.worker, self.clock))
        except Crash:
            event("worker crashed")
            # The worker aborted itself (Worker.abort): its steps in flight are cancelled,
            # as a dead process runs no more code. Let their cancellation settle.
            self._run(bury_the_dead())
            self.worker = self._new_worker()

    @rule()
    def stall_and_steal(self) -> None:
        """The current worker stalls just before a checkpoint, past its lease; another worker
        takes the run over and finishes the step; the stalled checkpoint is then refused."""
        self._run(self._stall_and_steal())

    async def _stall_and_steal(self) -> None:
        stalled = self.worker
        gate, entered = asyncio.Event(), asyncio.Event()
        commit = stalled.committer.commit

        async def held_commit(checkpoint: Checkpoint) -> None:
            if not gate.is_set():
                entered.set()
                await gate.wait()
            await commit(checkpoint)

        stalled.committer.commit = held_commit  # type: ignore[method-assign]
        work = asyncio.ensure_future(drive(stalled, self.clock))
        waiting = asyncio.ensure_future(entered.wait())
        await asyncio.wait({work, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        thief_crashed = False
        if entered.is_set():
            event("a worker stalled before a checkpoint")
            await self.clock.advance(CONFIG.lease_ttl + 1)  # its lease runs out meanwhile
            self.worker = self._new_worker()
            try:
                await drive(self.worker, self.clock)
            except Crash:
                thief_crashed = True
        gate.set()
        try:
            await work
        except Crash:
            thief_crashed = True
        if thief_crashed:
            await bury_the_dead()
            self.worker = self._new_worker()
        if stalled.stats.leases_lost:
            event("a stale checkpoint was fenced out")

    @rule(seconds=st.floats(min_value=0.1, max_value=3 * CONFIG.lease_ttl))
    def advance_clock(self, seconds: float) -> None:
        """Move the virtual clock: retry backoffs elapse, dead workers' leases expire."""
        self._run(self.clock.advance(seconds))

    # -- invariants -------------------------------------------------------------------
    @invariant()
    def journals_are_gapless_and_match_the_ledger(self) -> None:
        """Journals are numbered 1..n; each step completes at most once, with its key."""
        self._run(self._check_journals())

    async def _check_journals(self) -> None:
        for run_id in self.runs:
            run = await self.engine.get(run_id)
            assert run.status not in (RunStatus.FAILED, RunStatus.CANCELLED), run.error
            entries = await self.engine.journal(run_id)
            assert_gapless(entries)
            assert run.journal_seq == len(entries)
            completed = [e.step for e in entries if e.kind == JournalKind.STEP_COMPLETED]
            assert completed == list(STEPS[: len(completed)]), f"steps completed: {completed}"
            for entry in entries:
                if entry.kind == JournalKind.STEP_STARTED:
                    assert entry.step is not None
                    used = self.keys_used[(run_id, entry.step)]
                    assert entry.data["idempotency_key"] in used, (entry, used)

    @invariant()
    def one_idempotency_key_per_step(self) -> None:
        """Every step of every run only ever used one idempotency key."""
        for (run_id, step), keys in self.keys_used.items():
            assert len(keys) == 1, f"run {run_id} step {step} used keys {sorted(keys)}"

    @invariant()
    def no_effect_applied_twice(self) -> None:
        """No key's effect, and no step's booking, was applied more than once."""
        assert all(n <= 1 for n in self.applied.values()), self.applied
        assert all(n <= 1 for n in self.booked.values()), self.booked

    # -- the end ----------------------------------------------------------------------
    def teardown(self) -> None:
        """With faults disarmed, settle every run and check the end state; then clean up."""
        try:
            # Settle and check only if the example got here without failing (or being
            # stopped by Hypothesis): teardown runs in a ``finally`` of the example.
            if sys.exc_info()[1] is None:
                self.faults.clear()
                self._run(self._settle())
                self._run(self._check_settled())
        finally:
            self._close()

    async def _settle(self) -> None:
        worker = self._new_worker()
        keys = self.engine.registry.keys()
        for _ in range(SETTLE_ROUNDS):
            await drive(worker, self.clock)
            due = await self.engine.store.next_due_at(keys, include_leased=True)
            if due is None:
                return
            now = self.clock.now()
            # Due later: a retry backoff. Due now yet not run: a dead worker's lease.
            await self.clock.advance_to(due if due > now else now + CONFIG.lease_ttl + 1)
        raise AssertionError(f"runs still due after {SETTLE_ROUNDS} rounds of settling")

    async def _check_settled(self) -> None:
        await self._check_journals()
        self.one_idempotency_key_per_step()
        self.no_effect_applied_twice()
        for run_id in self.runs:
            run = await self.engine.get(run_id)
            assert run.status is RunStatus.COMPLETED, (run.status, run.error)
            entries = await self.engine.journal(run_id)
            completed = [e.step for e in entries if e.kind == JournalKind.STEP_COMPLETED]
            assert completed == list(STEPS)
            for step in STEPS:
                keys = self.keys_used[(run_id, step)]
                assert len(keys) == 1, f"run {run_id} step {step} used keys {sorted(keys)}"
                [key] = keys
                assert self.applied[key] == 1, (run_id, step, key)
                assert self.booked[(run_id, step)] == 1, (run_id, step)
                started = [
                    e.data["idempotency_key"]
                    for e in entries
                    if e.kind == JournalKind.STEP_STARTED and e.step == step
                ]
                assert started == [key]


@pytest.mark.parametrize(
    ("kind", "examples"),
    [("sqlite", 40), pytest.param("postgres", 20, marks=pytest.mark.postgres)],
)
def test_runs_survive_faults_crashes_and_clock_jumps(
    kind: str, examples: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Under random faults, crashes and clock jumps, journals stay gapless, each step
    keeps one idempotency key and every run settles with each effect applied once."""
    machine = on_backend(EngineMachine, kind, tmp_path, request)
    run_state_machine_as_test(machine, settings=settings(BASE_SETTINGS, max_examples=examples))


# -- regressions: engine bugs the machine found ---------------------------------------------
MakeEngine = Callable[..., Engine]


async def test_an_aborted_worker_applies_no_more_effects(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A step in flight when its worker dies applies no side effect afterwards."""
    effects: list[str] = []
    entered = asyncio.Event()
    flow = Flow("aborted")

    @flow.step(timeout=STEP_TIMEOUT)
    async def book(ctx: StepContext) -> None:
        entered.set()
        await ctx.clock.sleep(SLOW_CALL)
        effects.append(ctx.idempotency_key)

    engine = make_engine(flow, config=CONFIG)
    await engine.start("aborted")
    worker = engine.worker(worker_id="doomed")
    idle = asyncio.create_task(worker.run_until_idle())
    await entered.wait()
    worker.abort()
    await idle
    await clock.advance(2 * SLOW_CALL)
    assert effects == []


async def test_a_reclaimed_run_stays_tracked_while_it_executes(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A run re-claimed by the worker still executing it stays tracked; the stale
    execution is stopped."""
    calls: Counter[str] = Counter()
    gates: defaultdict[tuple[str, int], asyncio.Event] = defaultdict(asyncio.Event)
    flow = Flow("reclaimed")

    @flow.step
    async def work(ctx: StepContext) -> None:
        calls[ctx.input] += 1
        await gates[(ctx.input, calls[ctx.input])].wait()

    engine = make_engine(flow, config=CONFIG)
    stale = await engine.start("reclaimed", "a")
    await engine.start("reclaimed", "b")
    worker = engine.worker(worker_id="forgetful")
    idle = asyncio.create_task(worker.run_until_idle())
    try:
        await assert_eventually(_true_when(lambda: calls == Counter(a=1, b=1)))
        await clock.advance(CONFIG.lease_ttl + 1)  # run_until_idle sends no heartbeat
        gates[("b", 1)].set()  # b ends, so the worker claims again: a, whose lease expired
        await assert_eventually(_true_when(lambda: calls["a"] == 2))
        # The stale execution of a was stopped when a came back; the new one is tracked.
        assert stale.id in worker.active_runs
        gates[("a", 1)].set()
        await asyncio.sleep(0.05)
        assert stale.id in worker.active_runs
    finally:
        gates[("a", 2)].set()
        await idle
    assert (await engine.get(stale.id)).status is RunStatus.COMPLETED


def _true_when(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def poll() -> bool:
        return check()

    return poll
