"""Transition selection: document order, descriptors, conflicts, exit and entry order."""

from __future__ import annotations

from tests.statechart_helpers import labels, runner, traced
from tripwright.flows.statechart import (
    Log,
    Raise,
    on,
    parallel,
    state,
    statechart,
)


def test_first_matching_transition_in_document_order_wins(mode: str) -> None:
    """Of two transitions of one state matching an event, the first in document order is taken."""
    chart = statechart("c", state("a", on("go", "b"), on("go", "c")), state("b"), state("c"))
    r = runner(chart, mode)
    r.start()
    r.send("go")
    assert r.configuration == ("b",)


def test_descendant_transition_takes_priority_over_ancestor(mode: str) -> None:
    """A transition of the atomic state is preferred to one of its ancestor on the same event."""
    chart = statechart(
        "c", state("p", state("a", on("go", "x")), on("go", "y")), state("x"), state("y")
    )
    r = runner(chart, mode)
    r.start()
    r.send("go")
    assert r.configuration == ("x",)


def test_prefix_descriptor_matches_longer_names(mode: str) -> None:
    """Descriptor 'pay' matches 'pay.ok' but not 'payment'."""
    chart = statechart("c", state("a", on("pay", "b")), state("b"))
    r = runner(chart, mode)
    r.start()
    assert r.send("payment")[0].ignored
    assert r.configuration == ("a",)
    r.send("pay.ok")
    assert r.configuration == ("b",)


def test_wildcard_matches_every_event(mode: str) -> None:
    """Descriptor '*' matches any event name."""
    chart = statechart("c", state("a", on("*", "b")), state("b"))
    r = runner(chart, mode)
    r.start()
    r.send("anything.at.all")
    assert r.configuration == ("b",)


def test_unmatched_event_is_ignored_not_an_error(mode: str) -> None:
    """An event that enables nothing is reported ignored and changes nothing."""
    chart = statechart("c", state("a", on("go", "b")), state("b"))
    r = runner(chart, mode)
    r.start()
    step = r.send("other")[0]
    assert (step.ignored, step.microsteps, step.configuration) == (True, (), ("a",))


def test_guard_false_falls_through_to_next_transition(mode: str) -> None:
    """A transition whose condition is false is skipped for the next one in order."""
    chart = statechart(
        "c",
        state("a", on("go", "b", cond="n > 5"), on("go", "c", cond="n <= 5")),
        state("b"),
        state("c"),
        data={"n": 1},
    )
    r = runner(chart, mode)
    r.start()
    step = r.send("go")[0]
    assert r.configuration == ("c",)
    assert [(g.index, g.outcome) for g in step.microsteps[0].guards] == [(0, False), (1, True)]


def test_rejected_guards_are_reported_on_ignored_events(mode: str) -> None:
    """An event ignored because its guard was false says which guard said no."""
    chart = statechart("c", state("a", on("go", "b", cond=lambda ctx: False)), state("b"))
    r = runner(chart, mode)
    r.start()
    step = r.send("go")[0]
    assert step.ignored
    assert [(g.state, g.index, g.outcome) for g in step.rejected] == [("a", 0, False)]


def test_external_transition_exits_and_reenters_source(mode: str) -> None:
    """An external self-transition of a compound state exits and re-enters it."""
    chart = traced(statechart("c", state("p", state("a"), state("b"), on("go", "b"))))
    r = runner(chart, mode)
    r.start()
    labels(r)
    r.send("go")
    assert labels(r) == ["exit a", "exit p", "enter p", "enter b"]


def test_internal_transition_does_not_exit_source(mode: str) -> None:
    """An internal transition from a compound state to its descendant keeps the source active."""
    chart = traced(
        statechart("c", state("p", state("a"), state("b"), on("go", "b", internal=True)))
    )
    r = runner(chart, mode)
    r.start()
    labels(r)
    r.send("go")
    assert labels(r) == ["exit a", "enter b"]
    assert r.configuration == ("p", "b")


def test_targetless_transition_runs_actions_only(mode: str) -> None:
    """A transition without targets runs its actions and exits nothing."""
    chart = traced(statechart("c", state("a", on("go", actions=Log(label="acted")))))
    r = runner(chart, mode)
    r.start()
    labels(r)
    r.send("go")
    assert labels(r) == ["acted"]
    assert r.configuration == ("a",)


def test_exit_innermost_first_then_transition_then_entry_outermost_first(mode: str) -> None:
    """Exit content runs children first, then transition content, then entries parents first."""
    chart = traced(
        statechart(
            "c",
            state("p", state("q", state("a", on("go", "y", actions=Log(label="t"))))),
            state("x", state("y")),
        )
    )
    r = runner(chart, mode)
    r.start()
    assert labels(r) == ["enter p", "enter q", "enter a"]
    r.send("go")
    assert labels(r) == ["exit a", "exit q", "exit p", "t", "enter x", "enter y"]


def test_parallel_regions_each_take_their_transition(mode: str) -> None:
    """Non-conflicting transitions of parallel regions are all taken in one microstep."""
    chart = traced(
        statechart(
            "c",
            parallel(
                "p",
                state("r1", state("a1", on("go", "b1")), state("b1")),
                state("r2", state("a2", on("go", "b2")), state("b2")),
            ),
        )
    )
    r = runner(chart, mode)
    r.start()
    labels(r)
    step = r.send("go")[0]
    assert r.configuration == ("p", "r1", "b1", "r2", "b2")
    assert len(step.microsteps) == 1
    assert labels(r) == ["exit a2", "exit a1", "enter b1", "enter b2"]


def test_conflict_first_region_in_document_order_wins(mode: str) -> None:
    """Two regions leaving the parallel state conflict: the earlier in document order wins."""
    chart = statechart(
        "c",
        parallel("p", state("r1", on("go", "x")), state("r2", on("go", "y"))),
        state("x"),
        state("y"),
    )
    r = runner(chart, mode)
    r.start()
    r.send("go")
    assert r.configuration == ("x",)


def test_conflict_descendant_preempts_ancestor_transition(mode: str) -> None:
    """A region's own transition preempts a later-selected conflicting transition of an ancestor."""
    chart = statechart(
        "c",
        state(
            "top",
            parallel(
                "p",
                state("r1", state("a1", on("go", "b1")), state("b1")),
                state("r2", state("a2")),
            ),
            on("go", "out"),
        ),
        state("out"),
    )
    r = runner(chart, mode)
    r.start()
    r.send("go")
    # r2's atomic state a2 selects top's transition, which conflicts with r1's (exits p):
    # the one selected first (document order: a1's own) is kept.
    assert r.configuration == ("top", "p", "r1", "b1", "r2", "a2")


def test_transition_to_parallel_region_enters_siblings(mode: str) -> None:
    """Targeting a state inside one region enters the other regions' initial states too."""
    chart = statechart(
        "c",
        state("a", on("go", "b2")),
        parallel("p", state("r1", state("b1"), state("b2")), state("r2", state("c1"))),
    )
    r = runner(chart, mode)
    r.start()
    r.send("go")
    assert r.configuration == ("p", "r1", "b2", "r2", "c1")


def test_multiple_targets_enter_several_regions(mode: str) -> None:
    """A transition with two targets in two regions enters exactly those."""
    chart = statechart(
        "c",
        state("a", on("go", "b2 c2")),
        parallel(
            "p",
            state("r1", state("b1"), state("b2")),
            state("r2", state("c1"), state("c2")),
        ),
    )
    r = runner(chart, mode)
    r.start()
    r.send("go")
    assert r.configuration == ("p", "r1", "b2", "r2", "c2")


def test_raise_in_transition_is_processed_in_same_macrostep(mode: str) -> None:
    """A raised event is handled before send() returns, as part of the same macrostep."""
    chart = statechart(
        "c",
        state("a", on("go", "b", actions=Raise("next"))),
        state("b", on("next", "c")),
        state("c"),
    )
    r = runner(chart, mode)
    r.start()
    steps = r.send("go")
    assert r.configuration == ("c",)
    assert len(steps) == 1
    assert [
        m.event.name if m.event.type == "internal" else None  # type: ignore[union-attr]
        for m in steps[0].microsteps
    ] == [None, "next"]
