"""Statecharts on the durable engine, on every store: checkpoints, timers, events, audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import assert_gapless, drive, kinds
from tripwright.engine import Engine, JournalEntry, RunStatus, VirtualClock, Worker
from tripwright.errors import ConfigurationError, UnknownEventError
from tripwright.flows.statechart import (
    ActionContext,
    Assign,
    Cancel,
    Script,
    Send,
    Statechart,
    after,
    final,
    on,
    state,
    statechart,
)
from tripwright.flows.statechart.durable import (
    CONFIGURATION_KEY,
    MACROSTEP,
    StatechartFlow,
    send_event,
)

MakeEngine = Callable[..., Engine]


def booking(version: int = 1) -> Statechart:
    return statechart(
        "booking",
        state("quoted", on("hold", "held", cond="seats > 0", actions=Assign("held", expr="True"))),
        state(
            "held",
            on("pay", "paid", actions=Assign("paid", expr="_event.data['amount']")),
            on("cancel", "cancelled"),
            after("15m", "expired"),
        ),
        final("paid", donedata={"seats": "seats", "paid": "paid"}),
        final("expired"),
        final("cancelled"),
        data={"seats": 2, "held": False, "paid": 0},
        version=version,
    )


def transitions(journal: list[JournalEntry]) -> list[dict[str, Any]]:
    return [e.data for e in journal if e.kind == "transition"]


async def feed(
    engine: Engine, worker: Worker, clock: VirtualClock, run_id: str, name: str, data: Any = None
) -> None:
    """Send one event to a run and let the worker process it."""
    await send_event(engine, run_id, name, data)
    await drive(worker, clock)


async def start(make_engine: MakeEngine, clock: VirtualClock, chart: Statechart) -> Any:
    engine = make_engine(StatechartFlow(chart))
    run = await engine.start(chart.name)
    worker = engine.worker()
    await drive(worker, clock)
    return engine, worker, run


async def test_a_run_waits_in_its_initial_configuration(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Starting a statechart run enters its initial configuration and waits for events."""
    engine, _, run = await start(make_engine, clock, booking())
    stored = await engine.get(run.id)
    assert (stored.status, stored.context[CONFIGURATION_KEY]) == (RunStatus.WAITING, ["quoted"])
    assert (stored.context["statechart"]["snapshot"]["datamodel"]) == {
        "seats": 2,
        "held": False,
        "paid": 0,
    }


async def test_each_event_is_one_macrostep_and_one_engine_step(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Events are applied in arrival order, each in exactly one engine step, and the run
    completes at a top-level final state with its done data."""
    engine, worker, run = await start(make_engine, clock, booking())
    await send_event(engine, run.id, "hold")
    await feed(engine, worker, clock, run.id, "pay", {"amount": 120})
    done = await engine.get(run.id)
    journal = await engine.journal(run.id)
    assert (done.status, done.result) == (RunStatus.COMPLETED, {"seats": 2, "paid": 120})
    assert done.context[CONFIGURATION_KEY] == ["paid"]
    assert kinds(journal).count("step_completed") == 3
    assert [t["target"] for t in transitions(journal)] == [["quoted"], ["held"], ["paid"]]
    assert_gapless(journal)


async def test_a_transition_is_journaled_with_its_audit_fields(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A transition entry names the source and target configurations, the event (name, id,
    origin), the guard outcomes and the actions run, with time and correlation id."""
    engine, worker, run = await start(make_engine, clock, booking())
    event_id = await send_event(engine, run.id, "hold")
    await drive(worker, clock)
    journal = await engine.journal(run.id)
    [entry] = [e for e in journal if e.kind == "transition" and e.data["source"] == ["quoted"]]
    expected = {
        "event": {"name": "hold", "id": event_id, "origin": "external"},
        "source": ["quoted"],
        "target": ["held"],
        "transitions": [{"source": "quoted", "index": 0, "targets": ["held"]}],
        "guards": [{"state": "quoted", "index": 0, "outcome": True}],
        "clock": clock.now(),
    }
    assert expected == {k: v for k, v in entry.data.items() if k != "actions"}
    assert entry.data["actions"]  # the assign, the timer's send
    assert (run.correlation_id, clock.now()) == (entry.correlation_id, entry.at)


async def test_a_delayed_send_is_a_durable_timer_named_by_its_sendid(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A delayed send is a pending timer of the run; when due, it is taken as the event."""
    engine, worker, run = await start(make_engine, clock, booking())
    await feed(engine, worker, clock, run.id, "hold")
    summary = await engine.describe(run.id)
    assert summary.next_timer is not None
    assert ("tripwright.after.held.1", clock.now() + 900) == (
        summary.next_timer.name,
        summary.next_timer.at,
    )
    await clock.advance(899)
    await drive(worker, clock)
    assert (await engine.get(run.id)).status == RunStatus.WAITING
    await clock.advance(1)
    await drive(worker, clock)
    done = await engine.get(run.id)
    assert (done.status, done.context[CONFIGURATION_KEY]) == (RunStatus.COMPLETED, ["expired"])
    fired = transitions(await engine.journal(run.id))[-1]
    assert (
        fired["event"]["origin"],
        fired["event"]["sendid"],
    ) == ("timer", "tripwright.after.held.1")


async def test_leaving_a_state_cancels_its_timer(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A cancelled delayed send cancels its timer in the same checkpoint."""
    engine, worker, run = await start(make_engine, clock, booking())
    await feed(engine, worker, clock, run.id, "hold")
    await feed(engine, worker, clock, run.id, "cancel")
    journal = await engine.journal(run.id)
    assert await engine.store.pending_events(run.id) == []
    assert kinds(journal).count("timer_cancelled") == 1
    assert (await engine.get(run.id)).context[CONFIGURATION_KEY] == ["cancelled"]


async def test_a_send_set_and_cancelled_in_one_macrostep_never_reaches_the_store(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A timer set and cancelled within one macrostep leaves no trace in the store."""
    chart = statechart(
        "blink",
        state(
            "a",
            on("go", actions=[Send(event="late", id="t", delay=60), Cancel(sendid="t")]),
            on("late", "done"),
        ),
        final("done"),
    )
    engine, worker, run = await start(make_engine, clock, chart)
    await feed(engine, worker, clock, run.id, "go")
    journal = await engine.journal(run.id)
    assert (kinds(journal).count("timer_set"), kinds(journal).count("timer_cancelled")) == (0, 0)
    assert await engine.store.pending_events(run.id) == []


async def test_a_reused_sendid_replaces_its_pending_timer(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Sending again with the id of a pending delayed send replaces its timer."""
    chart = statechart(
        "again",
        state("a", on("go", actions=Send(event="late", id="t", delay=60)), on("late", "done")),
        final("done"),
    )
    engine, worker, run = await start(make_engine, clock, chart)
    await feed(engine, worker, clock, run.id, "go")
    await clock.advance(30)
    await feed(engine, worker, clock, run.id, "go")
    [pending] = await engine.store.pending_events(run.id)
    assert ("t", clock.now() + 60) == (pending.timer_name, pending.visible_at)
    await clock.advance(59)
    await drive(worker, clock)
    assert (await engine.get(run.id)).status == RunStatus.WAITING
    await clock.advance(1)
    await drive(worker, clock)
    assert (await engine.get(run.id)).status == RunStatus.COMPLETED


async def test_an_event_no_transition_takes_is_journaled_as_ignored(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """An event the configuration does not accept is journaled as ignored, not an error."""
    engine, worker, run = await start(make_engine, clock, booking())
    await feed(engine, worker, clock, run.id, "pay", {"amount": 1})
    stored = await engine.get(run.id)
    [ignored] = [t for t in transitions(await engine.journal(run.id)) if t.get("ignored")]
    assert (stored.status, stored.context[CONFIGURATION_KEY]) == (RunStatus.WAITING, ["quoted"])
    assert (ignored["event"]["name"], ignored["source"]) == ("pay", ["quoted"])


async def test_a_guard_that_is_false_is_journaled_with_the_ignored_event(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """When a guard refuses an event, the ignored entry says which condition was false."""
    engine = make_engine(StatechartFlow(booking()))
    run = await engine.start("booking", {"seats": 0})
    worker = engine.worker()
    await feed(engine, worker, clock, run.id, "hold")
    [ignored] = [t for t in transitions(await engine.journal(run.id)) if t.get("ignored")]
    assert ignored["guards"] == [{"state": "quoted", "index": 0, "outcome": False}]


async def test_an_unknown_event_is_refused_and_nothing_is_queued(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """An event no transition of the chart can take is refused with a clear error."""
    engine, _, run = await start(make_engine, clock, booking())
    with pytest.raises(UnknownEventError) as refused:
        await send_event(engine, run.id, "refund")
    assert "no transition of statechart 'booking' takes event 'refund'" in str(refused.value)
    assert (run.id, "refund") == (refused.value.run_id, refused.value.event)
    assert await engine.store.pending_events(run.id) == []


async def test_send_event_refuses_a_run_that_is_not_a_statechart(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """send_event only serves statechart runs."""
    from tripwright.engine import Flow, StepContext, WaitEvent

    flow = Flow("plain")

    @flow.step
    async def wait(ctx: StepContext) -> WaitEvent:
        return WaitEvent(then="wait")

    engine = make_engine(flow)
    run = await engine.start("plain")
    with pytest.raises(ConfigurationError):
        await send_event(engine, run.id, "go")


async def test_an_action_that_raises_becomes_error_execution_and_is_journaled(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A failing action raises error.execution (which the chart may handle) and is noted
    in the journal; the run goes on."""

    def charge(ctx: ActionContext) -> None:
        raise RuntimeError("card declined")

    chart = statechart(
        "charging",
        state("idle", on("charge", "charging")),
        state("charging", on("error.execution", "failed"), on_entry=charge),
        final("failed"),
    )
    engine, worker, run = await start(make_engine, clock, chart)
    await feed(engine, worker, clock, run.id, "charge")
    done = await engine.get(run.id)
    journal = await engine.journal(run.id)
    [note] = [e.data for e in journal if e.kind == "note" and "error" in e.data]
    assert (done.status, done.context[CONFIGURATION_KEY]) == (RunStatus.COMPLETED, ["failed"])
    assert (
        note["message"],
        note["error"],
        note["state"],
    ) == ("error.execution", "RuntimeError: card declined", "charging")


async def test_a_failing_expression_becomes_error_execution(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """An expression that fails raises error.execution; the run is not harmed."""
    chart = statechart(
        "exprs",
        state(
            "a",
            on("go", "b", actions=Assign("x", expr="1 / 0")),
            on("error.execution", "c"),
        ),
        state("b", on("error.execution", "c")),
        final("c"),
        data={"x": 0},
    )
    engine, worker, run = await start(make_engine, clock, chart)
    await feed(engine, worker, clock, run.id, "go")
    done = await engine.get(run.id)
    assert (done.status, done.context[CONFIGURATION_KEY]) == (RunStatus.COMPLETED, ["c"])


async def test_a_datamodel_value_that_is_not_json_fails_the_macrostep_cleanly(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A value that cannot be stored fails the run as it was before the macrostep: its
    stored snapshot and configuration are the last good ones."""
    chart = statechart(
        "sets",
        state("a", on("go", "b", actions=Script("bag.append({1, 2})")), on("other", "a")),
        state("b"),
        data={"bag": []},
    )
    engine, worker, run = await start(make_engine, clock, chart)
    before = (await engine.get(run.id)).context
    await feed(engine, worker, clock, run.id, "go")
    failed = await engine.get(run.id)
    assert (
        failed.status,
        (failed.error or {})["type"],
    ) == (RunStatus.FAILED, "ContextNotSerializableError")
    assert before == failed.context
    assert failed.context[CONFIGURATION_KEY] == ["a"]


async def test_events_the_session_sends_itself_are_their_own_macrosteps(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """An event a session sends itself is processed after its macrostep commits, as its
    own checkpoint, before the next external event."""
    chart = statechart(
        "echo",
        state("a", on("ping", "b", actions=Send(event="pong"))),
        state("b", on("pong", "c"), on("later", "a")),
        state("c", on("later", "done")),
        final("done"),
    )
    engine, worker, run = await start(make_engine, clock, chart)
    await send_event(engine, run.id, "ping")
    await feed(engine, worker, clock, run.id, "later")
    done = await engine.get(run.id)
    journal = await engine.journal(run.id)
    assert (done.status, done.context[CONFIGURATION_KEY]) == (RunStatus.COMPLETED, ["done"])
    assert [t["target"] for t in transitions(journal)] == [["a"], ["b"], ["c"], ["done"]]
    assert kinds(journal).count("step_completed") == 4


async def test_describe_shows_the_active_configuration(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """Run control describes a statechart run by its active states."""
    engine, worker, run = await start(make_engine, clock, booking())
    await feed(engine, worker, clock, run.id, "hold")
    position = (await engine.describe(run.id)).position
    assert (position.model, position.at) == ("statechart", ("held",))
    assert position.details["pending_sends"] == ["tripwright.after.held.1"]


async def test_a_non_mapping_input_fails_the_run_with_a_clear_error(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A run's input is the datamodel's start data: anything but a mapping is refused."""
    engine = make_engine(StatechartFlow(booking()))
    run = await engine.start("booking", [1, 2])
    await drive(engine.worker(), clock)
    failed = await engine.get(run.id)
    assert (failed.status, (failed.error or {})["type"]) == (RunStatus.FAILED, "ConfigurationError")


def test_the_definition_hash_follows_the_chart() -> None:
    """Two charts with the same name differ in hash; the same chart hashes the same."""
    assert StatechartFlow(booking()).definition_hash == StatechartFlow(booking()).definition_hash
    other = statechart("booking", state("quoted", on("hold", "quoted")))
    assert StatechartFlow(booking()).definition_hash != StatechartFlow(other).definition_hash


def test_the_flow_is_named_and_versioned_like_its_chart() -> None:
    """A statechart flow is the chart's name at the chart's version, with one step."""
    flow = StatechartFlow(booking(version=3))
    assert (flow.key, [s.name for s in flow.steps]) == ("booking@3", [MACROSTEP])


def test_accepted_events_follow_descriptor_matching() -> None:
    """Token-prefix descriptors and wildcards decide which names a chart accepts."""
    chart = statechart("prefix", state("a", on("booking", "b"), on("error", "b")), final("b"))
    flow = StatechartFlow(chart)
    assert [
        flow.accepts(n) for n in ("booking.held", "booking", "bookings", "error.execution")
    ] == [True, True, False, True]
    anything = StatechartFlow(statechart("any", state("a", on("*", "b")), final("b")))
    assert anything.accepts("whatever")


# -- several queued macrosteps in one checkpoint (macrosteps_per_checkpoint) -------------


def lifecycle() -> Statechart:
    return statechart(
        "lifecycle",
        state("draft", on("quote", "quoted", actions=Assign("quotes", expr="quotes + 1"))),
        state("quoted", on("hold", "held"), on("rebook", "draft")),
        state(
            "held",
            on("pay", "paid"),
            on("poke", actions=Assign("quotes", expr="quotes + 1")),
            on("bad", actions=Script("bag.append({1, 2})")),
            after("15m", "expired"),
        ),
        state("paid", on("rebook", "draft")),
        final("expired"),
        data={"quotes": 0, "bag": []},
    )


async def start_batched(
    make_engine: MakeEngine, clock: VirtualClock, chart: Statechart, per_checkpoint: int
) -> tuple[Engine, Worker, Any]:
    engine = make_engine(StatechartFlow(chart, macrosteps_per_checkpoint=per_checkpoint))
    run = await engine.start(chart.name)
    return engine, engine.worker(), run


def received_ids(journal: list[JournalEntry]) -> list[int]:
    return [e.data["event_id"] for e in journal if e.kind == "event_received"]


async def test_queued_events_are_several_macrosteps_of_one_checkpoint(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """With macrosteps_per_checkpoint, the events already queued are taken as that many
    macrosteps per checkpoint, each journaled (received, then its transitions) as
    unbatched; the machine ends where it would have one checkpoint per macrostep."""
    engine, worker, run = await start_batched(make_engine, clock, lifecycle(), 3)
    names = ["quote", "rebook", "quote", "rebook", "quote", "rebook", "quote"]
    ids = [await send_event(engine, run.id, name) for name in names]
    await drive(worker, clock)
    stored = await engine.get(run.id)
    journal = await engine.journal(run.id)
    assert_gapless(journal)
    assert stored.context[CONFIGURATION_KEY] == ["quoted"]
    assert stored.context["statechart"]["snapshot"]["datamodel"]["quotes"] == 4
    # The start, then 7 events in checkpoints of 3, 3 and 1.
    assert kinds(journal).count("step_completed") == 4
    assert received_ids(journal) == ids
    taken = [(t["event"] or {}).get("id") for t in transitions(journal)]
    assert taken == [None, *ids]
    order = [e.kind for e in journal if e.kind in ("event_received", "transition")]
    assert order == ["transition"] + ["event_received", "transition"] * len(ids)
    assert await engine.store.pending_events(run.id) == []


async def test_a_macrostep_with_effects_ends_its_checkpoint(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A macrostep that sets (or cancels) a timer is the last of its checkpoint: the
    timer reaches the store before the next event is taken, as without batching."""
    engine, worker, run = await start_batched(make_engine, clock, lifecycle(), 8)
    for name in ("quote", "hold", "pay", "rebook", "quote"):
        await send_event(engine, run.id, name)
    await drive(worker, clock)
    journal = await engine.journal(run.id)
    stored = await engine.get(run.id)
    assert stored.context[CONFIGURATION_KEY] == ["quoted"]
    # start | quote hold (sets the timer) | pay (cancels it) | rebook quote
    assert kinds(journal).count("step_completed") == 4
    assert [e.kind for e in journal if e.kind.startswith("timer")] == [
        "timer_set",
        "timer_cancelled",
    ]
    await clock.advance(3600)
    await drive(worker, clock)
    assert (await engine.get(run.id)).context[CONFIGURATION_KEY] == ["quoted"]


async def test_a_failing_macrostep_fails_the_run_as_it_was_before_it_not_before_its_batch(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A macrostep that fails within a checkpoint of several is undone; the ones before it
    commit, and it fails the run as it was before it, as without batching."""
    engine, worker, run = await start_batched(make_engine, clock, lifecycle(), 8)
    await send_event(engine, run.id, "quote")
    await send_event(engine, run.id, "hold")
    await drive(worker, clock)
    for name in ("poke", "poke", "bad", "pay"):
        await send_event(engine, run.id, name)
    await drive(worker, clock)
    failed = await engine.get(run.id)
    assert (failed.status, (failed.error or {})["type"]) == (
        RunStatus.FAILED,
        "ContextNotSerializableError",
    )
    assert failed.context[CONFIGURATION_KEY] == ["held"]
    assert failed.context["statechart"]["snapshot"]["datamodel"] == {"quotes": 3, "bag": []}
    journal = await engine.journal(run.id)
    assert_gapless(journal)
    names = [(t["event"] or {}).get("name") for t in transitions(journal)]
    assert names == [None, "quote", "hold", "poke", "poke"]
    # start | quote hold | poke poke (bad undone) | bad, failing as the step's first
    assert kinds(journal).count("step_completed") == 3
    assert kinds(journal)[-2:] == ["step_failed", "run_failed"]
    pending = [e.name for e in await engine.store.pending_events(run.id) if e.kind == "event"]
    assert pending == ["bad", "pay"]


def test_macrosteps_per_checkpoint_is_at_least_one() -> None:
    """A flow that would take no macrostep per checkpoint is refused."""
    with pytest.raises(ConfigurationError, match="at least 1"):
        StatechartFlow(lifecycle(), macrosteps_per_checkpoint=0)
