"""Final states: done.state events, parallel completion, done data, termination."""

from __future__ import annotations

from tests.statechart_helpers import labels, runner, traced
from tripwright.flows.statechart import (
    Content,
    Event,
    Log,
    Send,
    final,
    on,
    parallel,
    state,
    statechart,
)
from tripwright.flows.statechart.interpreter import Interpreter


def test_done_state_event_carries_done_data(mode: str) -> None:
    """Entering a final child raises done.state.<parent> with the final state's done data."""
    chart = statechart(
        "f",
        state(
            "booking",
            state("open", on("close", "closed")),
            final("closed", donedata={"total": "price * 2"}),
            on("done.state.booking", "over", actions=Log(label="data", expr="_event.data")),
        ),
        state("over"),
        data={"price": 21},
    )
    r = runner(chart, mode)
    r.start()
    r.send("close")
    assert r.configuration == ("over",)
    assert [e.value for e in r.log] == [{"total": 42}]


def test_parallel_is_done_when_every_region_is_final(mode: str) -> None:
    """done.state.<parallel> is raised once every region has reached a final state."""
    chart = statechart(
        "f",
        parallel(
            "trip",
            state("flight", state("f0", on("ticket", "f1")), final("f1")),
            state("hotel", state("h0", on("confirm", "h1")), final("h1")),
            on("done.state.trip", "booked"),
        ),
        state("booked"),
    )
    r = runner(chart, mode)
    r.start()
    r.send("ticket")
    assert r.configuration == ("trip", "flight", "f1", "hotel", "h0")
    r.send("confirm")
    assert tuple(r.configuration) == ("booked",)


def test_top_level_final_terminates_with_done_data() -> None:
    """Reaching a top-level final state stops the machine; the macrostep says done."""
    chart = statechart(
        "f",
        state("a", on("end", "z")),
        final("z", donedata=Content(value={"ok": True})),
    )
    m = Interpreter(chart, session_id="s")
    m.start()
    step = m.send(Event("end"))
    assert (step.done, step.donedata, m.terminated) == (True, {"ok": True}, True)
    assert m.configuration == ("z",)
    assert m.send(Event("end")).ignored


def test_termination_runs_exit_content_innermost_first(mode: str) -> None:
    """When the machine stops, every active state's exit content runs, children first."""
    chart = traced(statechart("f", state("a", on("end", "z")), final("z")))
    r = runner(chart, mode)
    r.start()
    labels(r)
    r.send("end")
    assert labels(r) == ["exit a", "enter z", "exit z"]
    assert r.terminated


def test_termination_cancels_pending_delayed_sends() -> None:
    """A machine that stops cancels its delayed sends."""
    chart = statechart(
        "f",
        state("a", on("end", "z"), on_entry=Send(event="x", delay=10, id="t")),
        final("z"),
    )
    m = Interpreter(chart, session_id="s")
    m.start()
    step = m.send(Event("end"))
    assert [c.sendid for c in step.cancels] == ["t"]
    assert m.pending_sends == ()
