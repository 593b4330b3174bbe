"""A stateful property test of the event-driven model under faults, on every store.

A Hypothesis ``RuleBasedStateMachine`` publishes events of three subjects to two consumer
groups, each handling up to a random number of queued events per checkpoint (its batch),
and interleaves, at random: publishing (one event, a burst of them, or again under an id
already used),
redelivering events that were already handled (a broker's late duplicate, through the
inbox acceptor), arming handler faults (a transient error, a permanent one, a crash before
the side effect and one after it, before the checkpoint), for a handler call a random
number of calls ahead (so within a batch), relaying the outbox (or not
yet: deliveries are delayed), running the current worker (a crash kills it and a new
worker takes over once the leases expire) and moving the virtual clock.

After every rule, per group and subject: the events the group committed as handled (its
mailbox state) are distinct, published, in publish order, and none is also dead-lettered.
Every handled event's effect reached the (idempotent) provider under the key
``<group>:<event id>``. At the end, with faults disarmed and everything settled: every
published event is, in each group, either handled exactly once or dead-lettered exactly
once; none is lost.
"""

from __future__ import annotations

import enum
import sys
from collections import Counter, defaultdict
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

from tests.helpers import drive
from tests.property.machines import (
    STATEFUL,
    Crash,
    StoreMachine,
    bury_the_dead,
    on_backend,
)
from tripwright.bus import Delivery, Event
from tripwright.bus.inbox import InboxAcceptor
from tripwright.engine import Engine, EngineConfig, RetryPolicy, VirtualClock, Worker
from tripwright.errors import FinalError
from tripwright.flows.events import Choreography, ConsumerGroup, EventBus, HandlerContext

pytestmark = pytest.mark.slow

T = TypeVar("T")
CONFIG = EngineConfig(lease_ttl=10.0, heartbeat_interval=3.0, poll_interval=0.01)
RETRY = RetryPolicy(max_attempts=3, initial_interval=1.0, max_interval=4.0)
SUBJECTS = ("T1", "T2", "T3")
GROUPS = ("a", "b")
MAX_EVENTS = 14
SETTLE_ROUNDS = 200
BASE_SETTINGS = settings(STATEFUL, stateful_step_count=25)


class FaultKind(enum.Enum):
    TRANSIENT = "transient handler error"
    PERMANENT = "permanent handler error"
    CRASH_BEFORE = "crash before the side effect"
    CRASH_AFTER = "crash after the side effect, before the checkpoint"


class TripStep(Event):
    type_name = "trip.step"
    trip_id: str
    n: int


class EventsMachine(StoreMachine):
    """Events of three subjects through two groups, under faults, crashes and delays."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock()
        self.generation = 0
        self.published: defaultdict[str, list[str]] = defaultdict(list)  # by subject, in order
        # Armed faults: what, for which group (None: any), after how many more calls.
        self.faults: list[tuple[FaultKind, str | None, int]] = []
        # Faults armed for one event's first handling in one group.
        self.event_faults: dict[tuple[str, str], FaultKind] = {}
        self.effects: Counter[str] = Counter()  # provider effects by idempotency key

    # -- plumbing -------------------------------------------------------------------------
    def _build(self, batches: dict[str, int]) -> None:
        """The groups (with their batch sizes), the bus, the engine and the first worker."""
        self.groups = {name: self._group(name, batches[name]) for name in GROUPS}
        choreography = Choreography("prop", list(self.groups.values()), external=(TripStep,))
        self.bus = EventBus(self.store, choreography, clock=self.clock)
        self.engine = Engine(self.store, self.bus.registry, clock=self.clock, config=CONFIG)
        self.worker = self._new_worker()
        self.acceptors = {
            name: InboxAcceptor(self.store, name, group.delivery, clock=self.clock)
            for name, group in self.groups.items()
        }

    def _group(self, name: str, batch: int) -> ConsumerGroup:
        group = ConsumerGroup(name, retry=RETRY, batch=batch)

        @group.handler(TripStep)
        async def apply(event: TripStep, ctx: HandlerContext) -> None:
            fault = self.event_faults.pop((name, ctx.event_id), None) or self._take_fault(name)
            if fault is FaultKind.TRANSIENT:
                raise ConnectionError("provider unreachable")
            if fault is FaultKind.PERMANENT:
                raise FinalError("refused for good")
            if fault is FaultKind.CRASH_BEFORE:
                raise Crash("before")
            self.effects[ctx.idempotency_key] += 1
            ctx.state.setdefault("handled", []).append(ctx.event_id)
            if fault is FaultKind.CRASH_AFTER:
                raise Crash("after")

        return group

    def _take_fault(self, group: str) -> FaultKind | None:
        """The fault this handler call meets: the first armed for its group, once the
        calls it waits for have passed."""
        for index, (kind, target, after) in enumerate(self.faults):
            if target in (None, group):
                if after > 0:
                    self.faults[index] = (kind, target, after - 1)
                    return None
                del self.faults[index]
                return kind
        return None

    def _new_worker(self) -> Worker:
        self.generation += 1
        return self.engine.worker(worker_id=f"worker-{self.generation}")

    @property
    def event_count(self) -> int:
        return sum(len(ids) for ids in self.published.values())

    # -- rules ----------------------------------------------------------------------------
    @initialize(batch_a=st.integers(min_value=1, max_value=5), batch_b=st.sampled_from((1, 32)))
    def first_events(self, batch_a: int, batch_b: int) -> None:
        """Build the groups with their batch sizes; publish one event per subject."""
        self._build({"a": batch_a, "b": batch_b})
        event(f"batch of group a: {batch_a}")
        for subject in SUBJECTS:
            self._publish(subject)

    @precondition(lambda self: self.event_count < MAX_EVENTS)
    @rule(subject=st.sampled_from(SUBJECTS))
    def publish(self, subject: str) -> None:
        """Publish the subject's next event."""
        self._publish(subject)

    def _publish(self, subject: str) -> str:
        n = len(self.published[subject])
        event_id = f"{subject}-{n}"
        self._run(self.bus.publish(TripStep(trip_id=subject, n=n), subject=subject, id=event_id))
        self.published[subject].append(event_id)
        return event_id

    @precondition(lambda self: self.event_count < MAX_EVENTS)
    @rule(
        subject=st.sampled_from(SUBJECTS),
        count=st.integers(min_value=2, max_value=5),
        failing=st.none() | st.tuples(st.sampled_from(GROUPS), st.integers(1, 4)),
    )
    def publish_burst(self, subject: str, count: int, failing: tuple[str, int] | None) -> None:
        """Publish several of the subject's next events at once (queued together, they
        are handled in one batch); maybe arm a transient fault for one of them, after
        the first, in one group."""
        ids = [self._publish(subject) for _ in range(min(count, MAX_EVENTS - self.event_count))]
        if failing is not None and failing[1] < len(ids):
            self.event_faults[(failing[0], ids[failing[1]])] = FaultKind.TRANSIENT

    @rule(subject=st.sampled_from(SUBJECTS), data=st.data())
    def publish_again(self, subject: str, data: st.DataObject) -> None:
        """Publish an event again under an id already used (the outbox keeps the first)."""
        ids = self.published[subject]
        if ids:
            n = data.draw(st.integers(min_value=0, max_value=len(ids) - 1))
            event_id = ids[n]
            self._run(
                self.bus.publish(TripStep(trip_id=subject, n=n), subject=subject, id=event_id)
            )

    @rule(group=st.sampled_from(GROUPS), subject=st.sampled_from(SUBJECTS), data=st.data())
    def redeliver_late_duplicate(self, group: str, subject: str, data: st.DataObject) -> None:
        """A broker hands over an event this group already handled, after later ones."""
        handled = self._run(self._handled(group, subject))
        if not handled:
            return
        event_id = data.draw(st.sampled_from(handled))
        n = int(event_id.rsplit("-", 1)[1])
        envelope = TripStep(trip_id=subject, n=n).envelope(
            source="/redelivery", subject=subject, id=event_id
        )
        self._run(self.acceptors[group]([Delivery("trip", envelope.to_bytes(), attempt=2)]))
        event("late duplicate redelivered")

    @rule(
        kind=st.sampled_from(FaultKind),
        group=st.sampled_from((None, *GROUPS)),
        after=st.integers(min_value=0, max_value=3),
    )
    def arm_fault(self, kind: FaultKind, group: str | None, after: int) -> None:
        """Arm a fault for a handler call (of one group, or of any): the next, or one
        ``after`` calls later."""
        self.faults.append((kind, group, after))

    @rule()
    def relay(self) -> None:
        """Relay a batch of the outbox into the inboxes."""
        self._run(self.bus.relay_once())

    @rule()
    def run_worker(self) -> None:
        """Run the current worker until idle; if it crashes, a new worker replaces it."""
        try:
            self._run(drive(self.worker, self.clock))
        except Crash:
            event("worker crashed")
            self._run(bury_the_dead())
            self.worker = self._new_worker()

    @rule(seconds=st.floats(min_value=0.1, max_value=2 * CONFIG.lease_ttl))
    def advance_clock(self, seconds: float) -> None:
        """Move the virtual clock: backoffs elapse, a dead worker's leases expire."""
        self._run(self.clock.advance(seconds))

    # -- checks ---------------------------------------------------------------------------
    async def _handled(self, group: str, subject: str) -> list[str]:
        try:
            run = await self.store.get_run(self.groups[group].mailbox(subject))
        except LookupError:
            return []
        return list(run.context.get("handled", []))

    async def _dead(self) -> Counter[tuple[str, str]]:
        return Counter((d.group, d.event_id) for d in await self.store.list_dead_letters())

    @invariant()
    def handled_events_are_distinct_ordered_and_not_dead(self) -> None:
        """Per group and subject, handled events are distinct, in publish order, not dead."""
        self._run(self._check(final=False))

    async def _check(self, *, final: bool) -> None:
        dead = await self._dead()
        assert all(count == 1 for count in dead.values()), dead
        for group in GROUPS:
            for subject in SUBJECTS:
                handled = await self._handled(group, subject)
                published = self.published[subject]
                assert len(handled) == len(set(handled)), (group, subject, handled)
                assert handled == [e for e in published if e in set(handled)], (group, handled)
                assert not any((group, e) in dead for e in handled), (group, handled, dead)
                assert all(self.effects[f"{group}:{e}"] >= 1 for e in handled)
                if final:
                    gone = [e for e in published if e not in handled and (group, e) not in dead]
                    assert gone == [], f"group {group} lost {gone}"

    # -- the end --------------------------------------------------------------------------
    def teardown(self) -> None:
        """With faults disarmed, settle everything and check that no event was lost."""
        try:
            if sys.exc_info()[1] is None:
                self.faults.clear()
                self.event_faults.clear()
                self._run(self._settle())
                self._run(self._check(final=True))
        finally:
            self._close()

    async def _settle(self) -> None:
        worker = self._new_worker()
        keys = self.engine.registry.keys()
        for _ in range(SETTLE_ROUNDS):
            moved = await self.bus.relay_once()
            await drive(worker, self.clock)
            due = await self.store.next_due_at(keys, include_leased=True)
            if not moved and due is None and not await self.store.outbox_count(published=False):
                return
            if due is not None:
                now = self.clock.now()
                await self.clock.advance_to(due if due > now else now + CONFIG.lease_ttl + 1)
        raise AssertionError("events still moving after settling")


@pytest.mark.parametrize(
    ("kind", "examples"),
    [("sqlite", 30), pytest.param("postgres", 15, marks=pytest.mark.postgres)],
)
def test_every_event_is_handled_once_per_group_or_dead_lettered(
    kind: str, examples: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Under duplicates, delays, late redeliveries, handler failures and crashes, each
    group handles each subject's events once each, in order, or dead-letters them; none
    is lost."""
    machine = on_backend(EventsMachine, kind, tmp_path, request)
    run_state_machine_as_test(machine, settings=settings(BASE_SETTINGS, max_examples=examples))
