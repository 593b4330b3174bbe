"""A mailbox handles its subject's queued events several to a checkpoint (``batch``), with
each event's failure isolated: the events before it commit, its attempt is retried or
dead-lettered as when handled alone, the events after it follow in order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from tests.conftest import FAST
from tests.helpers import drive, settle_events
from tests.property.machines import Crash, bury_the_dead
from tripwright.bus import Event
from tripwright.engine import (
    Engine,
    Flow,
    RetryPolicy,
    RunStatus,
    StepContext,
    VirtualClock,
    WaitEvent,
)
from tripwright.engine.records import Checkpoint
from tripwright.engine.store import Store
from tripwright.errors import DefinitionError, FinalError
from tripwright.flows.events import Choreography, ConsumerGroup, EventBus, HandlerContext

QUICK = RetryPolicy(max_attempts=3, initial_interval=0.5, jitter=False)


class TripStep(Event):
    type_name = "trip.step"
    trip_id: str
    n: int


@dataclass(frozen=True, slots=True)
class Written:
    """What one checkpoint of a mailbox wrote."""

    consumed: int
    attempts_failed: int
    dead_letters: int
    steps_completed: int


class Bench:
    """One group on the test store, its checkpoints recorded as they are committed."""

    def __init__(
        self,
        store: Store,
        clock: VirtualClock,
        group: ConsumerGroup,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.store = store
        self.clock = clock
        self.group = group
        self.bus = EventBus(store, Choreography("t", [group], external=(TripStep,)), clock=clock)
        self.engine = Engine(store, self.bus.registry, clock=clock, config=FAST)
        self.worker = self.engine.worker()
        self.written: list[Written] = []
        commit = store.commit

        async def recording(cps: Sequence[Checkpoint]) -> list[bool]:
            outcome = await commit(cps)
            for cp, ok in zip(cps, outcome, strict=True):
                kinds = Counter(e.kind for e in cp.journal)
                if ok and cp.run_id == group.mailbox("T1"):
                    self.written.append(
                        Written(
                            len(cp.consumed_events),
                            kinds["attempt_failed"],
                            len(cp.dead_letters),
                            kinds["step_completed"],
                        )
                    )
            return outcome

        monkeypatch.setattr(store, "commit", recording)

    async def publish(self, count: int) -> None:
        for n in range(count):
            await self.bus.publish(TripStep(trip_id="T1", n=n), subject="T1", id=f"e-{n}")

    async def settle(self) -> None:
        await settle_events(self.engine, self.bus, self.worker, self.clock)

    async def handled(self) -> list[str]:
        return list((await self.store.get_run(self.group.mailbox("T1"))).context["handled"])


def keeping(
    name: str, *, batch: int, calls: Counter[str], fail: set[str] | None = None
) -> ConsumerGroup:
    """A group that keeps the ids it handled in its state; events in ``fail`` always fail."""
    group = ConsumerGroup(name, retry=QUICK, batch=batch)

    @group.handler(TripStep)
    async def apply(event: TripStep, ctx: HandlerContext) -> None:
        calls[ctx.event_id] += 1
        if fail and ctx.event_id in fail:
            raise ConnectionError("provider down")
        ctx.state.setdefault("handled", []).append(ctx.event_id)

    return group


async def test_queued_events_of_a_subject_commit_in_one_checkpoint(
    store: Store, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six queued events are handled in order and committed by one checkpoint, with a
    journal entry per event as when handled one by one."""
    calls: Counter[str] = Counter()
    bench = Bench(store, clock, keeping("g", batch=32, calls=calls), monkeypatch)
    await bench.publish(6)
    await bench.settle()
    assert await bench.handled() == [f"e-{n}" for n in range(6)]
    assert bench.written == [Written(6, 0, 0, 6)]
    journal = await store.journal(bench.group.mailbox("T1"))
    received = [e.data["event_id"] for e in journal if e.kind == "event_received"]
    assert len(received) == len(set(received)) == 6
    assert [e.seq for e in journal] == list(range(1, len(journal) + 1))


@pytest.mark.parametrize("batch", [1, 2, 3])
async def test_a_checkpoint_holds_at_most_batch_events(
    store: Store, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """The cap: no checkpoint consumes more than ``batch`` events (1: one each)."""
    calls: Counter[str] = Counter()
    bench = Bench(store, clock, keeping("g", batch=batch, calls=calls), monkeypatch)
    await bench.publish(7)
    await bench.settle()
    assert await bench.handled() == [f"e-{n}" for n in range(7)]
    consumed = [w.consumed for w in bench.written if w.consumed]
    assert sum(consumed) == 7
    assert max(consumed) == batch
    assert all(calls[f"e-{n}"] == 1 for n in range(7))


async def test_a_batch_longer_than_one_read_ahead_handles_each_event_once(
    store: Store, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that outlasts the events read ahead reads the queue again, past the events
    it holds uncommitted: 40 queued events, a batch of 64, each handled once, in order."""
    calls: Counter[str] = Counter()
    bench = Bench(store, clock, keeping("g", batch=64, calls=calls), monkeypatch)
    await bench.publish(40)
    await bench.settle()
    assert await bench.handled() == [f"e-{n}" for n in range(40)]
    assert set(calls.values()) == {1}
    consumed = [w.consumed for w in bench.written]
    assert sum(consumed) == 40
    assert max(consumed) >= 32


async def test_a_failing_event_mid_batch_commits_those_before_and_is_retried_alone(
    store: Store, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Event 2 of 5 always fails: events 0 and 1 commit with its first failed attempt; it
    is retried with backoff, then dead-lettered, and events 3 and 4 follow, in order."""
    calls: Counter[str] = Counter()
    bench = Bench(store, clock, keeping("g", batch=32, calls=calls, fail={"e-2"}), monkeypatch)
    await bench.publish(5)
    started = clock.now()
    await bench.settle()
    assert await bench.handled() == ["e-0", "e-1", "e-3", "e-4"]
    assert bench.written == [
        Written(2, 1, 0, 2),  # e-0, e-1, and e-2's first attempt
        Written(0, 1, 0, 0),  # its second attempt
        Written(3, 0, 1, 3),  # its third, dead-lettered, then e-3 and e-4
    ]
    assert calls == Counter({"e-0": 1, "e-1": 1, "e-2": 3, "e-3": 1, "e-4": 1})
    assert clock.now() - started >= 0.5 + 1.0  # the backoff between attempts
    [letter] = await bench.bus.dead_letters.list(group="g")
    assert (letter.event_id, letter.attempts, letter.kind) == ("e-2", 3, "handler_failed")


async def test_a_transient_failure_mid_batch_loses_and_repeats_nothing(
    store: Store, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Event 1 fails once: after its retry every event is handled once, in order."""
    calls: Counter[str] = Counter()
    failing = {"e-1"}
    group = ConsumerGroup("g", retry=QUICK, batch=32)

    @group.handler(TripStep)
    async def apply(event: TripStep, ctx: HandlerContext) -> None:
        calls[ctx.event_id] += 1
        if ctx.event_id in failing:
            failing.discard(ctx.event_id)
            raise ConnectionError("provider down")
        ctx.state.setdefault("handled", []).append(ctx.event_id)

    bench = Bench(store, clock, group, monkeypatch)
    await bench.publish(4)
    await bench.settle()
    assert await bench.handled() == [f"e-{n}" for n in range(4)]
    assert calls == Counter({"e-0": 1, "e-1": 2, "e-2": 1, "e-3": 1})
    assert bench.written == [Written(1, 1, 0, 1), Written(3, 0, 0, 3)]


async def test_a_crash_mid_batch_commits_nothing_and_each_event_applies_once(
    store: Store, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies while handling event 3 of a batch, after 0-2 ran: nothing of the
    batch is committed; the next worker handles all five, each applied once, in order,
    under the same idempotency keys."""
    keys: dict[str, set[str]] = {}
    calls: Counter[str] = Counter()
    group = ConsumerGroup("g", retry=QUICK, batch=32)

    @group.handler(TripStep)
    async def apply(event: TripStep, ctx: HandlerContext) -> None:
        calls[ctx.event_id] += 1
        keys.setdefault(ctx.event_id, set()).add(ctx.idempotency_key)
        if ctx.event_id == "e-3" and calls["e-3"] == 1:
            raise Crash("killed between the handler and the checkpoint")
        ctx.state.setdefault("handled", []).append(ctx.event_id)

    bench = Bench(store, clock, group, monkeypatch)
    await bench.publish(5)
    await bench.bus.relay_once()
    with pytest.raises(Crash):
        await drive(bench.worker, clock)
    await bury_the_dead()
    assert bench.written == []
    assert (await store.get_run(group.mailbox("T1"))).context == {}
    await clock.advance(FAST.lease_ttl + 1)
    bench.worker = bench.engine.worker(worker_id="second")
    await bench.settle()
    assert await bench.handled() == [f"e-{n}" for n in range(5)]
    assert calls == Counter({"e-0": 2, "e-1": 2, "e-2": 2, "e-3": 2, "e-4": 1})
    assert all(ids == {f"g:e-{n}"} for n, ids in enumerate(keys[f"e-{n}"] for n in range(5)))


async def test_a_batch_fails_over_to_on_failure_with_the_steps_before_it(
    make_engine: Callable[..., Engine], store: Store, clock: VirtualClock
) -> None:
    """A plain flow's batching step: the event whose step fails for good commits with the
    steps before it, consumed, and the run goes on at ``on_failure``."""
    flow = Flow("batcher", version="1")
    seen: list[str] = []

    async def begin(ctx: StepContext) -> WaitEvent:
        return WaitEvent(then="take")

    async def take(ctx: StepContext) -> WaitEvent:
        assert ctx.event is not None
        if ctx.event.name == "bad":
            raise FinalError("refused")
        seen.append(ctx.event.name)
        return WaitEvent(then="take")

    async def recover(ctx: StepContext) -> None:
        seen.append("recovered")

    flow.add_step("begin", begin, start=True)
    flow.add_step("take", take, batch=8, on_failure="recover")
    flow.add_step("recover", recover)
    engine = make_engine(flow)
    run_id = (await engine.start(flow, {})).id
    await drive(engine.worker(), clock)
    for name in ("a", "b", "bad", "c"):
        await engine.send(run_id, name)
    await drive(engine.worker(), clock)
    assert seen == ["a", "b", "recovered"]
    assert (await engine.get(run_id)).status is RunStatus.COMPLETED
    journal = await store.journal(run_id)
    assert [e.seq for e in journal] == list(range(1, len(journal) + 1))
    assert [e.kind for e in journal].count("step_failed") == 1
    pending = await store.next_events(run_id, None, clock.now(), 10)
    assert [e.name for e in pending] == ["c"]  # a, b and the failed one were consumed


def test_batch_must_be_a_positive_int() -> None:
    with pytest.raises(DefinitionError, match="batch"):
        ConsumerGroup("g", batch=0)
    with pytest.raises(DefinitionError, match="batch"):
        Flow("f", version="1").add_step("s", _noop, batch=True)


async def _noop(ctx: object) -> None:
    return None
