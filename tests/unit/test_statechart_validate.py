"""Static checks of statecharts: one test per rule, each with the element and line cited."""

from __future__ import annotations

from tripwright.flows.problems import Problem
from tripwright.flows.statechart import (
    Cancel,
    Data,
    Invoke,
    Send,
    State,
    Statechart,
    StateKind,
    Transition,
    after,
    always,
    final,
    history,
    on,
    parallel,
    state,
    statechart,
)
from tripwright.flows.statechart.validate import validate
from tripwright.flows.statechart.yaml import load_yaml


def found(chart: Statechart, severity: str = "error") -> list[tuple[str, str]]:
    return [(p.element, p.message) for p in validate(chart) if p.severity == severity]


def test_clean_chart_has_no_problems() -> None:
    """A well-formed chart with timers, history and parallel regions has no findings."""
    chart = statechart(
        "ok",
        state(
            "work",
            history("back", "a"),
            state("a", on("next", "b")),
            parallel("b", state("r1", on("x", "done")), state("r2")),
            after("15m", "done"),
            on("pause", "paused"),
        ),
        state("paused", on("resume", "back")),
        final("done"),
    )
    assert validate(chart) == []


def test_unknown_target_cites_transition_and_line() -> None:
    """A transition to a missing state is an error naming the transition and its line."""
    chart = load_yaml(
        "statechart: t\nstates:\n  a:\n    on:\n      - {event: go, target: nowhere}\n"
        "  b: {type: final}\n"
    )
    assert Problem("error", "a/transition 1", "targets unknown state 'nowhere'", 5) in validate(
        chart
    )


def test_unreachable_state_is_a_warning() -> None:
    """A state nothing enters is reported as unreachable."""
    chart = statechart(
        "u", state("a", on("go", "done")), state("lost", on("x", "done")), final("done")
    )
    assert found(chart, "warning") == [
        ("lost", "unreachable: no initial entry and no transition enters it")
    ]


def test_state_with_no_way_out() -> None:
    """A reachable non-final atomic state with no targeted transition anywhere above is an error."""
    chart = statechart("d", state("a", on("go", "stuck")), state("stuck", on("noop")), final("f"))
    assert [e for e in found(chart) if e[0] == "stuck"] == [
        (
            "stuck",
            "no way out: it is not final and no transition of it, of its ancestors or of a "
            "parallel region beside it has a target",
        )
    ]


def test_ancestor_and_sibling_region_transitions_are_ways_out() -> None:
    """A state whose ancestor or a concurrent region can leave is not a dead end."""
    chart = statechart(
        "w",
        parallel(
            "p",
            state("r1", state("idle")),
            state("r2", state("waiting", on("cancel", "done"))),
        ),
        state("outer", state("inner"), on("stop", "done")),
        final("done"),
    )
    assert [e for e in found(chart) if e[0] in ("idle", "inner")] == []


def test_compound_final_without_exit() -> None:
    """Reaching a compound state's final child with nothing leaving the compound is an error."""
    chart = statechart("c", state("job", state("run", on("ok", "end")), final("end")), final("f"))
    assert (
        found(chart)[0][0],
        found(chart)[0][1].split(":")[0],
    ) == ("job", "no way out once its final state 'end' is reached")


def test_no_final_reachable_is_a_warning() -> None:
    """A cycle that can never reach a top-level final state is a warning."""
    chart = statechart(
        "loop",
        state("start", on("go", "ping"), on("quit", "done")),
        state("ping", on("x", "pong")),
        state("pong", on("x", "ping")),
        final("done"),
    )
    assert {"ping", "pong"} == {
        e for e, m in found(chart, "warning") if m.startswith("no top-level final")
    }


def test_initial_errors() -> None:
    """An initial that is not a descendant, or on an atomic state, is an error."""
    chart = Statechart(
        "i",
        (
            State("a", children=(State("a1"),), initial=Transition(targets=("b",))),
            State(
                "b",
                initial=Transition(targets=("a1",)),
                transitions=(Transition(("x",), targets=("a",)),),
            ),
        ),
    )
    assert {
        ("a", "initial 'b' is not a descendant of 'a'"),
        ("b", "only a compound state has an initial"),
    } <= set(found(chart))


def test_history_errors() -> None:
    """A history default outside its parent, or a history in an atomic state, is an error."""
    shallow_outside = Statechart(
        "h",
        (
            State(
                "p",
                children=(
                    State(
                        "h",
                        StateKind.HISTORY,
                        history="shallow",
                        transitions=(Transition(targets=("deep",)),),
                    ),
                    State("c", children=(State("deep"),)),
                ),
                transitions=(Transition(("x",), targets=("h",)),),
            ),
            State(
                "lonely",
                children=(State("hh", StateKind.HISTORY, history="deep"),),
                transitions=(Transition(("y",), targets=("p",)),),
            ),
        ),
    )
    messages = set(found(shallow_outside))
    assert (
        "h",
        "default 'deep' is not a child of 'p', as a shallow history's default must be",
    ) in messages
    assert (
        "hh",
        "a history state belongs in a compound or parallel state, not in atomic state 'lonely'",
    ) in messages


def test_duplicate_data_and_invoke_ids() -> None:
    """Two data or two invokes with the same id are errors."""
    chart = Statechart(
        "dup",
        (
            State(
                "a",
                datamodel=(Data("n", value=1),),
                invokes=(Invoke(id="kid", type="x"), Invoke(id="kid", type="y")),
                transitions=(Transition(("go",), targets=("f",)),),
            ),
            State("f", StateKind.FINAL),
        ),
        datamodel=(Data("n", value=0),),
    )
    assert {
        ("a", "duplicate data id 'n' (one datamodel per chart)"),
        ("a", "duplicate invoke id 'kid'"),
    } <= set(found(chart))


def test_shadowed_transitions() -> None:
    """A later transition whose events an earlier unguarded one all matches is never taken."""
    chart = statechart(
        "s",
        state(
            "a",
            on("pay", "b"),
            on("pay.card", "f"),
            on("pay.card", "b", cond="True"),
            on("refund", "f", cond="x"),
            on("refund", "b"),
        ),
        state("b", on("*", "f"), on("anything", "a")),
        final("f"),
    )
    shadowed = sorted(e for e, m in found(chart) if m.startswith("never taken"))
    assert shadowed == ["a/transition 2", "a/transition 3", "b/transition 2"]


def test_eventless_shadowing() -> None:
    """An unguarded eventless transition shadows later eventless ones, not evented ones."""
    chart = statechart(
        "e", state("a", always("f"), always("g"), on("go", "g")), final("f"), final("g")
    )
    assert [e for e, m in found(chart) if m.startswith("never taken")] == ["a/transition 2"]


def test_timers_that_cannot_be_cancelled() -> None:
    """Delayed sends with an id nobody cancels, or without an id in a leavable state, warn."""
    chart = statechart(
        "t",
        state(
            "a",
            on("go", "f"),
            on_entry=[
                Send(event="late", id="t1", delay=60),
                Send(event="anon", delay=60),
                Send(event="ok", id="t2", delay=60),
            ],
            on_exit=Cancel(sendid="t2"),
        ),
        final("f"),
    )
    warnings = [m for e, m in found(chart, "warning") if e == "a"]
    assert warnings == [
        "delayed send of 'late' has id 't1' but no cancel names it: it fires even after 'a' "
        "is left",
        "delayed send of 'anon' has no id, so nothing can cancel it: it fires even after 'a' "
        "is left (give it an id and cancel it on exit)",
    ]


def test_done_descriptors_naming_nothing() -> None:
    """A done.state or done.invoke descriptor naming no state or invoke is a warning."""
    chart = statechart(
        "dn",
        state("job", state("run", on("ok", "end")), final("end"), on("done.state.jbo", "f")),
        final("f"),
    )
    assert ("job/transition 1", "event 'done.state.jbo': no state 'jbo'") in found(chart, "warning")


def test_events_nobody_sends_with_inputs() -> None:
    """With the host's inputs listed, a descriptor nothing produces is a warning."""
    chart = statechart(
        "ev",
        state("a", on("pay", "b"), on("typo", "b"), on_entry=Send(event="tick", id="x", delay=1)),
        state("b", on("tick", "f")),
        final("f"),
    )
    messages = [(p.element, p.message) for p in validate(chart, inputs=["pay"])]
    assert (
        "a/transition 2",
        "event 'typo': neither the chart nor the inputs produce an event it matches",
    ) in messages
    assert not any(m.startswith(("event 'tick'", "event 'pay'")) for _, m in messages)


def test_invoked_charts_are_checked() -> None:
    """Problems inside an inline invoked chart are reported with the invoke as prefix."""
    child = statechart("child", state("c", on("x", "gone")))
    chart = statechart(
        "parent",
        state("a", on("done.invoke.kid", "f"), Invoke(id="kid", content=child)),
        final("f"),
    )
    assert ("kid: c/transition 1", "targets unknown state 'gone'") in found(chart)
