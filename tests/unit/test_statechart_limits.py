"""The microstep limit: a macrostep that never ends stops with StatechartLoopError, in
memory and on the engine, instead of hanging its worker."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.helpers import drive
from tests.statechart_helpers import runner
from tripwright.engine import Engine, RetryPolicy, RunStatus, VirtualClock
from tripwright.errors import FinalError, InvalidRunStateError, StatechartError
from tripwright.flows.statechart import (
    Assign,
    Event,
    Interpreter,
    Invoke,
    Raise,
    Send,
    Statechart,
    StatechartLoopError,
    always,
    dump_yaml,
    load_scxml,
    load_yaml,
    on,
    simulate,
    state,
    statechart,
    to_scxml,
)
from tripwright.flows.statechart.durable import CONFIGURATION_KEY, StatechartFlow, send_event
from tripwright.flows.statechart.interpreter import DEFAULT_MAX_MICROSTEPS

# A loop that escaped the limit would hang the test: fail it instead.
pytestmark = pytest.mark.timeout(20)

MakeEngine = Callable[..., Engine]


def eventless_cycle(max_microsteps: int | None = None) -> Statechart:
    """``a -> b -> a`` by eventless transitions, entered on ``go``."""
    return statechart(
        "spinner",
        state("idle", on("go", "a")),
        state("a", always("b")),
        state("b", always("a")),
        max_microsteps=max_microsteps,
    )


def raise_reenters() -> Statechart:
    """Entering ``a`` raises ``again``, whose transition exits and re-enters ``a``."""
    return statechart(
        "echo",
        state("idle", on("go", "a")),
        state("a", on("again", "a"), on_entry=Raise("again")),
    )


def failing_guard(handled: bool) -> Statechart:
    """An eventless guard that always fails; ``handled``: a transition re-raises the error."""
    parts = [always("never", cond="1 / 0")]
    if handled:
        parts.append(on("error.execution", actions=Raise("error.execution")))
    return statechart(
        "guarded",
        state("idle", on("go", "checking")),
        state("checking", *parts),
        state("never"),
    )


def internal_sends() -> Statechart:
    """Each ``tick`` sends the next one to the session's internal queue."""
    return statechart(
        "ticker",
        state(
            "idle",
            on("go", actions=Send(event="tick", target="#_internal")),
            on("tick", actions=Send(event="tick", target="#_internal")),
        ),
    )


def chatty_child() -> Statechart:
    """The parent invokes, on ``go``, a child that keeps sending itself ``ping``."""
    child = statechart(
        "chatty",
        state(
            "talking",
            on("ping", actions=Send(event="ping")),
            on_entry=Send(event="ping"),
        ),
    )
    return statechart(
        "parent",
        state("idle", on("go", "calling")),
        state("calling", Invoke(id="kid", content=child)),
    )


LOOPS = {
    "eventless cycle": eventless_cycle(),
    "raise re-enters its state": raise_reenters(),
    "failing eventless guard": failing_guard(handled=False),
    "failing eventless guard, error re-raised": failing_guard(handled=True),
    "sends to #_internal": internal_sends(),
    "child sends itself events": chatty_child(),
}


@pytest.mark.parametrize("name", list(LOOPS))
def test_a_macrostep_that_never_ends_raises_a_loop_error(name: str, mode: str) -> None:
    """Each kind of endless macrostep stops at the limit with StatechartLoopError."""
    chart = LOOPS[name]
    r = runner(chart, mode)
    r.start()
    with pytest.raises(StatechartLoopError) as caught:
        r.send("go")
    error = caught.value
    assert (error.chart, error.limit) == (chart.name, DEFAULT_MAX_MICROSTEPS)
    assert isinstance(error, FinalError)
    assert chart.name in str(error)
    assert "1000" in str(error)


def test_the_error_names_configuration_and_last_transitions() -> None:
    """The message names the chart, the configuration and the last events and transitions."""
    machine = Interpreter(eventless_cycle(), session_id="s-1")
    machine.start()
    with pytest.raises(StatechartLoopError) as caught:
        machine.send(Event("go"))
    error = caught.value
    assert error.configuration in (("a",), ("b",))
    assert error.stimulus == "event 'go'"
    assert len(error.recent) == 5
    assert set(error.recent) <= {"a -> b (eventless)", "b -> a (eventless)"}
    text = str(error)
    assert "statechart 'spinner'" in text
    assert "session s-1" in text
    assert "b -> a (eventless)" in text
    assert "event 'go'" in text


def test_the_error_names_the_internal_events_that_loop() -> None:
    """A loop through internal events shows them in the last transitions."""
    machine = Interpreter(raise_reenters(), session_id="s-2")
    machine.start()
    with pytest.raises(StatechartLoopError) as caught:
        machine.send(Event("go"))
    assert caught.value.recent[-1] == "a -> a on 'again'"


def test_a_stopped_session_refuses_to_go_on() -> None:
    """After a loop error the session is stopped: further events are refused, not ignored."""
    machine = Interpreter(eventless_cycle(), session_id="s-3")
    machine.start()
    with pytest.raises(StatechartLoopError):
        machine.send(Event("go"))
    assert machine.terminated
    assert not machine.done
    with pytest.raises(InvalidRunStateError, match="stopped by a loop"):
        machine.send(Event("go"))


def counting(steps: int, max_microsteps: int | None = None) -> Statechart:
    """``steps`` eventless microsteps that count ``n`` up, then stop in ``done``."""
    return statechart(
        "counter",
        state(
            "count",
            always("done", cond=f"n >= {steps}"),
            always("count", actions=Assign("n", expr="n + 1")),
        ),
        state("done"),
        data={"n": 0},
        max_microsteps=max_microsteps,
    )


def test_a_long_but_finite_macrostep_runs_to_its_end() -> None:
    """A macrostep of fewer microsteps than the limit is not a loop."""
    machine = Interpreter(counting(DEFAULT_MAX_MICROSTEPS - 2), session_id="s")
    step = machine.start()
    assert (step.configuration, machine.datamodel["n"]) == (("done",), 998)


def test_the_limit_is_set_per_chart() -> None:
    """A chart's max_microsteps replaces the default."""
    with pytest.raises(StatechartLoopError) as caught:
        Interpreter(counting(20, max_microsteps=10), session_id="s").start()
    assert caught.value.limit == 10
    step = Interpreter(counting(2000, max_microsteps=3000), session_id="s").start()
    assert step.configuration == ("done",)


def test_the_interpreter_limit_overrides_the_chart() -> None:
    """An interpreter's max_microsteps replaces the chart's."""
    chart = counting(20, max_microsteps=10)
    step = Interpreter(chart, session_id="s", max_microsteps=50).start()
    assert step.configuration == ("done",)
    with pytest.raises(StatechartLoopError):
        Interpreter(counting(20), session_id="s", max_microsteps=5).start()


def test_a_limit_must_be_positive() -> None:
    """A limit below 1 is a malformed chart."""
    with pytest.raises(ValueError, match="max_microsteps"):
        counting(2, max_microsteps=0)
    with pytest.raises(ValueError, match="max_microsteps"):
        Interpreter(counting(2), session_id="s", max_microsteps=0)


def test_a_loop_while_starting_raises_too() -> None:
    """A loop reached by the initial configuration stops start()."""
    chart = statechart("spin", state("a", always("b")), state("b", always("a")))
    with pytest.raises(StatechartLoopError, match="starting"):
        Interpreter(chart, session_id="s").start()


def test_a_restored_session_keeps_the_interpreter_limit() -> None:
    """Restoring a snapshot with a limit applies it."""
    chart = eventless_cycle()
    machine = Interpreter(chart, session_id="s")
    machine.start()
    again = Interpreter.restore(chart, machine.snapshot(), max_microsteps=7)
    with pytest.raises(StatechartLoopError) as caught:
        again.send(Event("go"))
    assert caught.value.limit == 7


# -- on the engine ------------------------------------------------------------------------


async def test_a_looping_run_fails_once_and_keeps_its_last_checkpoint(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """On the engine a loop fails the run at once (no retry), with the error journaled; the
    stored run stays as it was before the macrostep, its event still queued."""
    flow = StatechartFlow(eventless_cycle(), retry=RetryPolicy(max_attempts=5))
    engine = make_engine(flow)
    run = await engine.start("spinner")
    worker = engine.worker()
    await drive(worker, clock)
    before = await engine.get(run.id)
    assert before.context[CONFIGURATION_KEY] == ["idle"]
    await send_event(engine, run.id, "go")
    await drive(worker, clock)
    failed = await engine.get(run.id)
    assert failed.status is RunStatus.FAILED
    assert failed.context == before.context
    assert failed.error is not None
    assert failed.error["type"] == "StatechartLoopError"
    assert "statechart 'spinner'" in failed.error["message"]
    assert failed.error["attempts"] == 1
    journal = await engine.journal(run.id)
    kinds = [e.kind for e in journal]
    assert "attempt_failed" not in kinds
    assert kinds[-2:] == ["step_failed", "run_failed"]
    assert journal[-1].data["error"]["type"] == "StatechartLoopError"
    assert [e.name for e in await engine.store.pending_events(run.id)] == ["go"]


async def test_a_run_looping_from_its_start_fails(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A loop in the first macrostep fails the run with nothing checkpointed."""
    chart = statechart("spin", state("a", always("b")), state("b", always("a")))
    engine = make_engine(StatechartFlow(chart))
    run = await engine.start("spin")
    await drive(engine.worker(), clock)
    failed = await engine.get(run.id)
    assert (failed.status, failed.context) == (RunStatus.FAILED, {})
    assert failed.error is not None
    assert "starting" in failed.error["message"]


async def test_a_looping_child_fails_its_parent_run(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A child chart that keeps sending itself events fails the run that invoked it."""
    engine = make_engine(StatechartFlow(chart := chatty_child()))
    run = await engine.start(chart.name)
    worker = engine.worker()
    await drive(worker, clock)
    await send_event(engine, run.id, "go")
    await drive(worker, clock)
    failed = await engine.get(run.id)
    assert failed.status is RunStatus.FAILED
    assert failed.context[CONFIGURATION_KEY] == ["idle"]


def test_yaml_and_scxml_carry_the_limit() -> None:
    """max_microsteps is a YAML key and the tw:max-microsteps SCXML attribute; both round-trip."""
    chart = eventless_cycle(max_microsteps=25)
    text = dump_yaml(chart)
    assert "max_microsteps: 25" in text
    assert load_yaml(text) == chart
    document = to_scxml(chart)
    assert 'tw:max-microsteps="25"' in document
    assert load_scxml(document) == chart
    assert load_yaml(dump_yaml(eventless_cycle())).max_microsteps is None


@pytest.mark.parametrize(
    "document",
    [
        "statechart: x\nmax_microsteps: 0\nstates: {a: {}}\n",
        "statechart: x\nmax_microsteps: many\nstates: {a: {}}\n",
    ],
)
def test_a_bad_yaml_limit_is_refused_with_its_line(document: str) -> None:
    """A YAML limit that is not a whole number of at least 1 is refused, with its line."""
    with pytest.raises(StatechartError, match="max_microsteps") as caught:
        load_yaml(document)
    assert caught.value.line == 2


def test_a_bad_scxml_limit_is_refused() -> None:
    """A tw:max-microsteps that is not a whole number of at least 1 is refused."""
    document = (
        '<scxml xmlns="http://www.w3.org/2005/07/scxml" '
        'xmlns:tw="https://tripwright.dev/scxml" version="1.0" datamodel="python" '
        'name="x" tw:max-microsteps="-3"><state id="a"/></scxml>'
    )
    with pytest.raises(StatechartError, match="max-microsteps"):
        load_scxml(document)


def test_simulate_raises_the_loop_error() -> None:
    """simulate() reports a loop as StatechartLoopError; its max_microsteps overrides."""
    with pytest.raises(StatechartLoopError) as caught:
        simulate(eventless_cycle(), [(0, "go", None)], max_microsteps=12)
    assert caught.value.limit == 12
