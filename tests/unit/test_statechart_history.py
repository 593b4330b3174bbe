"""History states: default transitions, shallow and deep restore."""

from __future__ import annotations

import pytest

from tests.statechart_helpers import labels, runner, traced
from tripwright.errors import StatechartError
from tripwright.flows.statechart import Event, Log, Statechart, history, on, state, statechart
from tripwright.flows.statechart.interpreter import Interpreter


def _chart(deep: bool) -> Statechart:
    return statechart(
        "h",
        state(
            "work",
            history("hist", "a", deep=deep, actions=Log(label="default")),
            state("a", on("next", "b")),
            state("b", state("b1", on("next", "b2")), state("b2")),
            on("pause", "paused"),
        ),
        state("paused", on("resume", "hist")),
    )


def test_history_default_is_taken_before_anything_was_recorded(mode: str) -> None:
    """Entering an empty history takes its default transition and runs its content."""
    chart = statechart(
        "h",
        state("off", on("on", "hist")),
        state("work", history("hist", "b", actions=Log(label="default")), state("a"), state("b")),
    )
    r = runner(traced(chart), mode)
    r.start()
    labels(r)
    r.send("on")
    assert r.configuration == ("work", "b")
    assert labels(r) == ["exit off", "enter work", "default", "enter b"]


def test_shallow_history_restores_the_child_with_its_initial(mode: str) -> None:
    """Shallow history re-enters the recorded child, and that child's default substate."""
    r = runner(_chart(deep=False), mode)
    r.start()
    r.send("next")
    r.send("next")
    assert r.configuration == ("work", "b", "b2")
    r.send("pause")
    r.send("resume")
    assert r.configuration == ("work", "b", "b1")


def test_deep_history_restores_the_atomic_descendants(mode: str) -> None:
    """Deep history re-enters exactly the atomic states that were active."""
    r = runner(_chart(deep=True), mode)
    r.start()
    r.send("next")
    r.send("next")
    r.send("pause")
    assert r.configuration == ("paused",)
    r.send("resume")
    assert tuple(r.configuration) == ("work", "b", "b2")


def test_history_values_survive_a_snapshot() -> None:
    """The recorded history is part of the snapshot and restored with it."""
    chart = _chart(deep=True)
    m = Interpreter(chart, session_id="s")
    m.start()
    for name in ("next", "next", "pause"):
        m.send(Event(name))
    snap = m.snapshot()
    assert snap["history"] == {"hist": ["b2"]}
    again = Interpreter.restore(chart, snap)
    again.send(Event("resume"))
    assert again.configuration == ("work", "b", "b2")


def test_history_without_default_or_value_is_an_error() -> None:
    """Entering a history with nothing recorded and no default is a definition error."""
    chart = statechart("h", state("off", on("on", "hist")), state("w", history("hist"), state("a")))
    m = Interpreter(chart, session_id="s")
    m.start()
    with pytest.raises(StatechartError):
        m.send(Event("on"))
