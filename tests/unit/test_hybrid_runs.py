"""The hybrid model on both stores: a chart's state invokes a saga as a child run, hears
its outcome as done.invoke / error.invoke, cancels it on exit, and publishes typed events
that a consumer group applies once."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.conftest import FAST
from tests.helpers import settle, settle_events
from tests.hybrid_flows import Ledger, TripConfirmed, trip_hybrid
from tripwright.bus import schema_uri
from tripwright.engine import Engine, RunStatus, VirtualClock
from tripwright.engine.store import Store
from tripwright.flows.hybrid import Hybrid, publish
from tripwright.flows.statechart import (
    Assign,
    Invoke,
    Send,
    final,
    on,
    send_event,
    state,
    statechart,
)
from tripwright.flows.statechart.durable import configuration_of


class Trip:
    """The trip hybrid on the test store: an engine, its worker and the event bus."""

    def __init__(self, store: Store, clock: VirtualClock) -> None:
        self.store = store
        self.clock = clock
        self.ledger = Ledger()
        self.hybrid: Hybrid = trip_hybrid(self.ledger)
        self.engine = Engine(store, [], clock=clock, config=FAST)
        self.hybrid.register(self.engine)
        self.bus = self.hybrid.event_bus(store, clock=clock)
        self.worker = self.engine.worker()

    async def settle(self) -> None:
        """Run, relay and jump the clock until nothing is due or unpublished."""
        await settle_events(self.engine, self.bus, self.worker, self.clock)

    async def book(self, run_id: str = "trip-1", **data: object) -> str:
        """Start a machine and send it ``book``; settle."""
        await self.engine.start("trip", {"trip_id": "T-1", **data}, run_id=run_id)
        await self.settle()
        await send_event(self.engine, run_id, "book")
        await self.settle()
        return run_id


@pytest.fixture
def trip(store: Store, clock: VirtualClock) -> Trip:
    return Trip(store, clock)


def transitions(journal: Sequence[object]) -> list[tuple[str | None, bool]]:
    """(event name, ignored) of every transition entry."""
    out = []
    for entry in journal:
        if getattr(entry, "kind", None) == "transition":
            data = entry.data  # type: ignore[attr-defined]
            out.append(((data.get("event") or {}).get("name"), bool(data.get("ignored"))))
    return out


async def test_an_invoked_saga_runs_as_a_child_and_its_result_is_done_invoke(
    trip: Trip,
) -> None:
    """Entering booking starts the saga as run <machine>.<invokeid>; once it completes the
    machine takes done.invoke.book with the saga's result and reaches confirmed."""
    run_id = await trip.book()
    child = await trip.engine.get("trip-1.book")
    assert (child.flow_name, child.status, child.input) == (
        "book_providers",
        RunStatus.WAITING,
        {"trip_id": "T-1", "fail_at": None},
    )
    await send_event(trip.engine, run_id, "fare.approved")
    await trip.settle()
    machine = await trip.engine.get(run_id)
    booked = {step: f"{step}:T-1" for step in ("hold_flight", "hold_room", "charge")}
    assert (machine.status, configuration_of(machine), machine.result) == (
        RunStatus.COMPLETED,
        ["confirmed"],
        {"booked": {**booked, "approval": None}},
    )
    assert trip.ledger.steps() == ["hold_flight", "hold_room", "charge"]
    taken = transitions(await trip.engine.journal(run_id))
    assert ("done.invoke.book", False) in taken


async def test_a_failed_saga_compensates_then_the_machine_gets_error_invoke(
    trip: Trip,
) -> None:
    """A saga that fails for good undoes what it held; then error.invoke.book carries the
    reason and the compensated steps, and the machine moves to failed."""
    run_id = await trip.book(fail_at="hold_room")
    machine = await trip.engine.get(run_id)
    assert trip.ledger.steps() == ["hold_flight", "undo:hold_flight"]
    failure = machine.result["failure"]
    assert (configuration_of(machine), failure["status"], failure["compensated"]) == (
        ["failed"],
        "failed",
        ["hold_flight"],
    )
    assert (failure["saga"], failure["run"], failure["reason"]) == (
        "book_providers",
        "trip-1.book",
        "saga failed and was compensated",
    )
    assert failure["failure"]["step"] == "step:hold_room"


async def test_exiting_the_invoking_state_cancels_the_saga_which_compensates(
    trip: Trip,
) -> None:
    """cancel exits booking mid-saga: the saga compensates what it held, last first, and
    its late end notice is journaled as ignored."""
    run_id = await trip.book()
    await send_event(trip.engine, run_id, "cancel")
    await trip.settle()
    machine = await trip.engine.get(run_id)
    child = await trip.engine.get("trip-1.book")
    assert (configuration_of(machine), child.status) == (["cancelled"], RunStatus.CANCELLED)
    assert trip.ledger.steps() == ["hold_flight", "hold_room", "undo:hold_room", "undo:hold_flight"]
    # The machine ended first: the saga's end notice is dropped, not queued.
    assert (machine.status, await trip.store.pending_events(run_id)) == (RunStatus.COMPLETED, [])


async def test_a_replaced_saga_s_end_notice_is_ignored(trip: Trip) -> None:
    """Re-entering booking cancels the first saga (it compensates) and starts a second
    under a new run id; the first one's end notice is journaled as ignored, with why, and
    the second one's outcome is the one the machine takes."""
    run_id = await trip.book()
    await send_event(trip.engine, run_id, "change")
    await trip.settle()
    first, second = await trip.engine.get("trip-1.book"), await trip.engine.get("trip-1.book~2")
    assert (first.status, second.status) == (RunStatus.CANCELLED, RunStatus.WAITING)
    journal = await trip.engine.journal(run_id)
    [ignored] = [e.data for e in journal if e.kind == "transition" and e.data.get("ignored")]
    assert (ignored["event"]["name"], ignored["event"]["origin"]) == (
        "tripwright.invoke.ended",
        "invoke",
    )
    assert ignored["reason"] == (
        "saga run 'trip-1.book' ended (cancelled) after its invocation 'book' was over"
    )
    await send_event(trip.engine, run_id, "fare.approved")
    await trip.settle()
    machine = await trip.engine.get(run_id)
    assert configuration_of(machine) == ["confirmed"]
    by_run: dict[str, list[str]] = {}
    for step, key in trip.ledger.calls:
        by_run.setdefault(key.split(":")[0], []).append(step)
    assert by_run == {
        "trip-1.book": ["hold_flight", "hold_room", "undo:hold_room", "undo:hold_flight"],
        "trip-1.book~2": ["hold_flight", "hold_room", "charge"],
    }


async def test_the_event_published_at_a_transition_is_consumed_once(trip: Trip) -> None:
    """TripConfirmed, published when done.invoke.book is taken, reaches the notifier group
    once, in the typed envelope: source, subject, dataschema, trace and correlation."""
    run_id = await trip.book()
    await send_event(trip.engine, run_id, "fare.approved")
    await trip.settle()
    [seen] = trip.ledger.notified
    assert (seen["trip"], seen["flight"]) == ("T-1", "hold_flight:T-1")
    assert (seen["type"], seen["subject"], seen["correlationid"], seen["dataschema"]) == (
        "trip.confirmed",
        "trip-1",
        "trip-1",
        schema_uri(TripConfirmed.type_name, TripConfirmed.version),
    )
    assert seen["source"] == "/tripwright/flows/trip/runs/trip-1"
    assert seen["traceparent"].startswith("00-")
    # Relaying again (as after a relay crash) delivers nothing new.
    await trip.settle()
    assert len(trip.ledger.notified) == 1


async def test_registering_a_hybrid_registers_its_parts(store: Store, clock: VirtualClock) -> None:
    """One call registers the machine, the saga and the group's mailbox flow."""
    engine = Engine(store, [], clock=clock)
    trip_hybrid(Ledger()).register(engine)
    assert sorted(engine.registry.keys()) == [
        "book_providers@1",
        "events.notifier@1",
        "trip@1",
    ]


async def test_refused_invokes_and_sends_come_back_as_error_events(
    store: Store, clock: VirtualClock
) -> None:
    """An invoke of a saga the definition lacks answers error.execution; an event send
    whose data its class refuses publishes nothing and answers error.communication."""
    chart = statechart(
        "refusals",
        state(
            "a",
            Invoke(id="x", type="saga", src="missing"),
            on("error.execution", "b", actions=Assign("why", expr="_event.data['message']")),
        ),
        state(
            "b",
            on("go", actions=publish(TripConfirmed, trip_id="42")),
            on("error.communication", "c", actions=Assign("bad", expr="_event.data['message']")),
        ),
        final("c", donedata={"why": "why", "bad": "bad"}),
        data={"why": None, "bad": None},
    )
    engine = Engine(store, [], clock=clock, config=FAST)
    Hybrid(chart, publishes=[TripConfirmed], external=[TripConfirmed]).register(engine)
    await engine.start("refusals", run_id="r")
    await settle(engine, engine.worker(), clock)
    await send_event(engine, "r", "go")
    await settle(engine, engine.worker(), clock)
    run = await engine.get("r")
    assert run.result["why"] == "no saga 'missing' to invoke (known: none)"
    assert run.result["bad"].startswith("data of trip.confirmed v1 is invalid: trip_id:")
    assert await store.outbox_count(published=False) == 0


async def test_cancelling_the_machine_cancels_its_sagas(trip: Trip) -> None:
    """Engine.cancel of a machine runs its clean-up: its running saga compensates, and the
    machine ends as cancelled; run control showed the saga while it ran."""
    run_id = await trip.book()
    shown = await trip.engine.describe(run_id)
    assert shown.position is not None
    assert (shown.position.model, shown.position.details["sagas"]) == (
        "hybrid",
        {"book": {"run": "trip-1.book", "saga": "book_providers"}},
    )
    await trip.engine.cancel(run_id, "customer called")
    await trip.settle()
    machine, child = await trip.engine.get(run_id), await trip.engine.get("trip-1.book")
    assert (machine.status, child.status) == (RunStatus.CANCELLED, RunStatus.CANCELLED)
    assert trip.ledger.steps() == ["hold_flight", "hold_room", "undo:hold_room", "undo:hold_flight"]
    assert (child.error or {}).get("message") == "machine cancelled: customer called"


async def test_a_send_to_the_invoked_saga_queues_one_of_its_signals(trip: Trip) -> None:
    """<send target="#_book"> of the saga's signal reaches its run; any other event is
    refused with error.communication, and the saga carries on."""
    chart = statechart(
        "explicit",
        state(
            "booking",
            Invoke(id="book", type="saga", src="book_providers", namelist=("trip_id",)),
            on("approve", actions=Send(event="fare.approved", target="#_book")),
            on("nudge", actions=Send(event="hurry.up", target="#_book")),
            on("error.communication", actions=Assign("refused", expr="_event.data['message']")),
            on("done.invoke.book", "booked"),
        ),
        final("booked", donedata={"refused": "refused"}),
        data={"trip_id": "T-9", "refused": None},
    )
    Hybrid(chart, sagas=trip.hybrid.sagas).register(trip.engine)
    await trip.engine.start("explicit", run_id="x")
    await trip.settle()
    for name in ("nudge", "approve"):
        await send_event(trip.engine, "x", name)
        await trip.settle()
    run = await trip.engine.get("x")
    assert (configuration_of(run), run.result["refused"]) == (
        ["booked"],
        "cannot send 'hurry.up' to '#_book': saga 'book_providers' waits for fare.approved, "
        "not 'hurry.up'",
    )
