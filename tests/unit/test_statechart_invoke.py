"""Invoke: child charts in the interpreter, host services as outputs, finalize, autoforward."""

from __future__ import annotations

from tests.statechart_helpers import runner
from tripwright.flows.statechart import (
    Assign,
    Event,
    Interpreter,
    Invoke,
    InvokeCancel,
    InvokeForward,
    InvokeRequest,
    Log,
    Param,
    Send,
    Statechart,
    after,
    final,
    on,
    state,
    statechart,
)

CHILD = statechart(
    "child",
    state(
        "working",
        on("ping", actions=Send(event="pong", target="#_parent", namelist=("n",))),
        on("finish", "over"),
        on_entry=Send(event="hello", target="#_parent"),
    ),
    final("over", donedata={"result": "n * 10"}),
    data={"n": 0},
)


def parent() -> Statechart:
    return statechart(
        "parent",
        state(
            "busy",
            Invoke(id="kid", content=CHILD, params=(Param("n", expr="7"),)),
            on("hello", actions=Log(label="hello", expr="_event.invokeid")),
            on("pong", actions=Log(label="pong", expr="_event.data")),
            on("go", actions=Send(event="ping", target="#_kid")),
            on("done.invoke.kid", "idle", actions=Log(label="done", expr="_event.data")),
            on("leave", "idle"),
        ),
        state("idle"),
        data={"seen": None},
    )


def test_child_starts_talks_to_parent_and_reports_done(mode: str) -> None:
    """A child chart gets its params, sends to #_parent, and ends with done.invoke."""
    r = runner(parent(), mode)
    r.start()
    assert [(e.label, e.value) for e in r.log] == [("hello", "kid")]
    r.outputs.clear()
    r.send("go")
    assert [(e.label, e.value) for e in r.log] == [("pong", {"n": 7})]


def test_done_invoke_carries_child_done_data(mode: str) -> None:
    """When the child reaches its final state the parent gets done.invoke.<id> with its data."""
    chart = statechart(
        "p",
        state(
            "busy",
            Invoke(id="kid", content=CHILD, params=(Param("n", expr="4"),)),
            on("relay", actions=Send(event="finish", target="#_kid")),
            on("done.invoke.kid", "idle", actions=Log(label="done", expr="_event.data")),
        ),
        state("idle"),
    )
    r = runner(chart, mode)
    r.start()
    r.send("relay")
    assert r.configuration == ("idle",)
    assert [e.value for e in r.log if e.label == "done"] == [{"result": 40}]


def test_finalize_runs_before_child_events(mode: str) -> None:
    """finalize runs with the child's event before the parent's transitions see it."""
    chart = statechart(
        "p",
        state(
            "busy",
            Invoke(
                id="kid",
                content=CHILD,
                finalize=(Assign("seen", expr="_event.name"),),
            ),
            on("hello", "idle", cond="seen == 'hello'"),
        ),
        state("idle"),
        data={"seen": None},
    )
    r = runner(chart, mode)
    r.start()
    assert r.configuration == ("idle",)


def test_autoforward_sends_external_events_to_the_child(mode: str) -> None:
    """With autoforward the child receives each external event the parent processes."""
    chart = statechart(
        "p",
        state(
            "busy",
            Invoke(id="kid", content=CHILD, autoforward=True),
            on("done.invoke.kid", "idle"),
        ),
        state("idle"),
    )
    r = runner(chart, mode)
    r.start()
    r.send("finish")
    assert r.configuration == ("idle",)


def test_leaving_the_state_cancels_the_child_and_its_timers(mode: str) -> None:
    """Exiting the invoking state ends the child: its timers are cancelled, it sends nothing."""
    sleepy = statechart("sleepy", state("nap", after(60, "woke")), final("woke"))
    chart = statechart(
        "p",
        state(
            "busy",
            Invoke(id="kid", content=sleepy),
            on("leave", "idle"),
            on("done.invoke.kid", "woken"),
        ),
        state("idle"),
        state("woken"),
    )
    r = runner(chart, mode)
    [first] = r.start()
    assert [d.session for d in first.delayed_sends] == ["memory.kid"]
    [step] = r.send("leave")
    assert [c.sendid for c in step.cancels] == ["tripwright.after.nap.1"]
    r.advance(120)
    assert r.configuration == ("idle",)


def test_child_timer_fires_through_the_parent(mode: str) -> None:
    """A child's delayed send fires when due and its done.invoke reaches the parent."""
    sleepy = statechart("sleepy", state("nap", after(60, "woke")), final("woke"))
    chart = statechart(
        "p",
        state("busy", Invoke(id="kid", content=sleepy), on("done.invoke.kid", "woken")),
        state("woken"),
    )
    r = runner(chart, mode)
    r.start()
    r.advance(59)
    assert r.configuration == ("busy",)
    r.advance(1)
    assert r.configuration == ("woken",)


def test_host_invoke_is_requested_cancelled_and_finalized(mode: str) -> None:
    """A non-chart invoke becomes InvokeRequest/InvokeCancel outputs; the host's done event
    runs finalize."""
    chart = statechart(
        "p",
        state(
            "booking",
            Invoke(
                id="saga",
                type="saga",
                src="book_trip",
                params=(Param("trip", expr="trip"),),
                autoforward=True,
                finalize=(Assign("ref", expr="_event.data['ref']"),),
            ),
            on("done.invoke.saga", "booked"),
            on("abort", "aborted"),
        ),
        state("booked"),
        state("aborted"),
        data={"trip": "T1", "ref": None},
    )
    r = runner(chart, mode)
    [first] = r.start()
    assert [InvokeRequest("saga", "saga", "book_trip", {"trip": "T1"}, True, "memory")] == list(
        first.invoke_requests
    )
    [step] = r.send("nudge")
    assert [InvokeForward("saga", Event("nudge"), "memory")] == [
        o for o in step.outputs if isinstance(o, InvokeForward)
    ]
    r.deliver(Event("done.invoke.saga", {"ref": "R9"}, invokeid="saga"))
    assert (r.configuration, r.datamodel["ref"]) == (("booked",), "R9")


def test_host_invoke_cancelled_on_exit_and_late_events_ignored(mode: str) -> None:
    """Exiting the invoking state cancels the host service; its later events are ignored."""
    chart = statechart(
        "p",
        state(
            "booking",
            Invoke(id="saga", type="saga", src="book_trip"),
            on("abort", "aborted"),
        ),
        state("aborted", on("done.invoke.saga", "confused")),
        state("confused"),
    )
    r = runner(chart, mode)
    r.start()
    [step] = r.send("abort")
    assert [InvokeCancel("saga", "memory")] == list(step.invoke_cancels)
    [late] = r.deliver(Event("done.invoke.saga", invokeid="saga"))
    assert (late.ignored, r.configuration) == (True, ("aborted",))


def test_snapshot_nests_the_child() -> None:
    """A parent's snapshot holds the child's, and the restored pair behaves the same."""
    chart = parent()
    m = Interpreter(chart, session_id="s")
    m.start()
    snap = m.snapshot()
    assert snap["invoked"]["kid"]["snapshot"]["configuration"] == ["working"]  # type: ignore[index]
    twin = Interpreter.restore(chart, snap)
    for machine in (m, twin):
        while machine.pending:
            machine.step()
    assert m.send(Event("go")) == twin.send(Event("go"))
