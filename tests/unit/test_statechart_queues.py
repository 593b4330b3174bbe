"""Queues and time: internal before external, eventless transitions, delayed sends, cancel."""

from __future__ import annotations

from tests.statechart_helpers import labels, runner
from tripwright.flows.statechart import (
    Assign,
    Cancel,
    DelayedSend,
    Event,
    Log,
    Raise,
    Send,
    SendCancel,
    after,
    always,
    final,
    on,
    state,
    statechart,
)
from tripwright.flows.statechart.interpreter import Interpreter


def test_internal_queue_is_drained_before_external_events(mode: str) -> None:
    """Events sent to self wait until every raised event of the macrostep is processed."""
    chart = statechart(
        "c",
        state(
            "a",
            on(
                "go",
                actions=[Send(event="ext"), Raise("int"), Log(label="sent")],
            ),
            on("int", actions=Log(label="int")),
            on("ext", actions=Log(label="ext")),
        ),
    )
    r = runner(chart, mode)
    r.start()
    steps = r.send("go")
    assert labels(r) == ["sent", "int", "ext"]
    assert len(steps) == 2  # the self-sent event is its own macrostep
    assert steps[1].event.name == "ext"  # type: ignore[union-attr]


def test_eventless_transitions_run_until_stable(mode: str) -> None:
    """Eventless transitions chain within one macrostep until none is enabled."""
    chart = statechart(
        "c",
        state(
            "count",
            always("count", cond="n < 3", actions=Assign("n", expr="n + 1")),
            always("done", cond="n >= 3"),
        ),
        final("done"),
        data={"n": 0},
    )
    r = runner(chart, mode)
    r.start()
    assert r.configuration == ("done",)
    assert r.terminated
    assert len(r.transitions) - 1 == 4  # three loops and the exit, after the initial entry


def test_eventless_transitions_come_before_internal_events(mode: str) -> None:
    """After a microstep, eventless transitions are tried before the next internal event."""
    chart = statechart(
        "c",
        state("a", on("go", "b", actions=Raise("later"))),
        state("b", always("c"), on("later", "x")),
        state("c", on("later", "d")),
        state("d"),
        state("x"),
    )
    r = runner(chart, mode)
    r.start()
    r.send("go")
    assert r.configuration == ("d",)


def test_delayed_send_fires_when_time_passes(mode: str) -> None:
    """A delayed send is an output to schedule; the runner fires it when it falls due."""
    chart = statechart("c", state("held", after("15m", "expired")), final("expired"))
    r = runner(chart, mode)
    first = r.start()[0]
    [timer] = first.delayed_sends
    assert (timer.delay, timer.due, timer.sendid) == (900.0, 900.0, "tripwright.after.held.1")
    r.advance(899)
    assert r.configuration == ("held",)
    r.advance(1)
    assert (r.configuration, r.terminated) == (("expired",), True)


def test_leaving_the_state_cancels_its_timer(mode: str) -> None:
    """Leaving a state with a timer cancels the delayed send; it never fires."""
    chart = statechart(
        "c",
        state("held", after(60, "expired"), on("pay", "paid")),
        state("paid"),
        final("expired"),
    )
    r = runner(chart, mode)
    r.start()
    step = r.send("pay")[0]
    assert [SendCancel("tripwright.after.held.1", "memory")] == list(step.cancels)
    r.advance(3600)
    assert r.configuration == ("paid",)


def test_cancel_by_sendidexpr(mode: str) -> None:
    """A send id stored by idlocation can be cancelled through sendidexpr."""
    chart = statechart(
        "c",
        state(
            "a",
            on("arm", actions=Send(event="boom", delay=5, idlocation="timer")),
            on("disarm", actions=Cancel(sendidexpr="timer")),
            on("boom", "exploded"),
        ),
        state("exploded"),
        data={"timer": None},
    )
    r = runner(chart, mode)
    r.start()
    r.send("arm")
    assert r.datamodel["timer"] == "memory.send.1"
    r.send("disarm")
    r.advance(10)
    assert r.configuration == ("a",)


def test_delayexpr_accepts_duration_text(mode: str) -> None:
    """delayexpr may evaluate to seconds or to a duration such as '2m'."""
    chart = statechart(
        "c",
        state("a", on("arm", actions=Send(event="ring", delayexpr="wait")), on("ring", "b")),
        state("b"),
        data={"wait": "2m"},
    )
    r = runner(chart, mode)
    r.start()
    r.send("arm")
    r.advance(119)
    assert r.configuration == ("a",)
    r.advance(1)
    assert r.configuration == ("b",)


def test_send_to_other_target_is_an_output() -> None:
    """A send to a target the interpreter does not own is handed to the host."""
    chart = statechart(
        "c",
        state("a", on_entry=Send(event="notify", target="mailer", content=None, namelist=("n",))),
        data={"n": 3},
    )
    m = Interpreter(chart, session_id="s")
    [out] = m.start().outgoing
    assert (out.target, out.event.name, out.event.data) == ("mailer", "notify", {"n": 3})


def test_host_fires_due_send_by_id() -> None:
    """A host calls fire(sendid) for a due send; a cancelled one fires nothing."""
    chart = statechart(
        "c",
        state("a", on("arm", actions=Send(event="ring", delay=1, id="t")), on("ring", "b")),
        state("b"),
    )
    m = Interpreter(chart, session_id="s", now=lambda: 100.0)
    m.start()
    [timer] = m.send(Event("arm")).delayed_sends
    assert DelayedSend("t", timer.event, 1.0, 101.0, None, None, "s") == timer
    step = m.fire("t")
    assert step is not None
    assert step.configuration == ("b",)
    assert m.fire("t") is None
