"""The statechart model and the typed Python API that builds it."""

from __future__ import annotations

import pytest

from tripwright.errors import DefinitionError, StatechartError
from tripwright.flows.statechart import (
    Call,
    Cancel,
    Data,
    Event,
    Send,
    State,
    StateKind,
    Transition,
    after,
    always,
    final,
    history,
    matches,
    on,
    parallel,
    parse_delay,
    state,
    statechart,
)


def test_builder_nests_states_in_document_order() -> None:
    """Nested calls give a tree whose walk is the document order."""
    chart = statechart(
        "trip",
        state("a", state("a1"), state("a2"), initial="a2"),
        parallel("p", state("r1"), state("r2")),
        final("done"),
    )
    assert chart.state_ids == ("a", "a1", "a2", "p", "r1", "r2", "done")
    assert chart.state("a").initial.targets == ("a2",)  # type: ignore[union-attr]
    assert chart.state("a").is_compound
    assert chart.state("a1").is_atomic
    assert chart.state("p").kind == StateKind.PARALLEL
    assert chart.parent_of("r1") == "p"
    assert chart.parent_of("a") is None


def test_on_splits_descriptors_and_targets() -> None:
    """Space-separated descriptors and targets become tuples; callables become Call."""

    def act(ctx: object) -> None:
        return None

    t = on("pay refund.*", "x y", actions=act, internal=True)
    assert t.events == ("pay", "refund.*")
    assert t.targets == ("x", "y")
    assert t.type == "internal"
    assert (Call(act),) == t.actions
    assert always("x").events == ()


def test_after_becomes_send_cancel_and_transition() -> None:
    """A timer is a delayed send on entry, its cancel on exit and a transition on it."""
    s = state("held", after("15m", "expired"))
    name = "tripwright.after.held.1"
    assert ((Send(event=name, id=name, delay=900.0),),) == s.on_entry
    assert ((Cancel(sendid=name),),) == s.on_exit
    assert (Transition(events=(name,), targets=("expired",)),) == s.transitions


def test_duplicate_ids_are_refused_with_the_line() -> None:
    """Two states with one id make the chart invalid, naming the id and the line."""
    with pytest.raises(StatechartError) as info:
        statechart("x", State("a", line=3), State("a", line=7))
    assert (info.value.element, info.value.line) == ("a", 7)
    assert str(info.value).startswith("line 7: duplicate state id 'a'")
    assert isinstance(info.value, DefinitionError)


def test_history_needs_a_type_and_no_children() -> None:
    """A history state without a history type, or with children, is refused."""
    with pytest.raises(StatechartError):
        State("h", kind=StateKind.HISTORY)
    with pytest.raises(StatechartError):
        State("h", kind=StateKind.HISTORY, history="deep", children=(State("x"),))
    assert history("h", "a", deep=True).history == "deep"


def test_unknown_state_lookup_is_an_error() -> None:
    """Looking up a state that does not exist raises a StatechartError (a LookupError too)."""
    chart = statechart("x", state("a"))
    with pytest.raises(StatechartError):
        chart.state("nope")
    assert not chart.has_state("nope")


def test_data_mapping_becomes_declarations() -> None:
    """A data mapping declares one literal variable per key."""
    chart = statechart("x", state("a"), data={"n": 1})
    assert (Data(id="n", value=1),) == chart.datamodel


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(5, 5.0), ("500ms", 0.5), ("30s", 30.0), ("15m", 900.0), ("2h", 7200.0), (".5s", 0.5)],
)
def test_parse_delay(text: object, seconds: float) -> None:
    """Durations are seconds or texts with a unit."""
    assert seconds == parse_delay(text)


@pytest.mark.parametrize("bad", ["soon", "-1s", -1, True, None])
def test_parse_delay_refuses_garbage(bad: object) -> None:
    """Anything that is not a non-negative duration is refused."""
    with pytest.raises(StatechartError):
        parse_delay(bad)


@pytest.mark.parametrize(
    ("descriptors", "name", "expected"),
    [
        (("a.b",), "a.b.c", True),
        (("a.b",), "a.b", True),
        (("a.b",), "a.bc", False),
        (("a",), "b", False),
        (("*",), "anything.at.all", True),
        (("error.*",), "error.execution", True),
        (("x", "error."), "error.communication", True),
    ],
)
def test_descriptor_matching(descriptors: tuple[str, ...], name: str, expected: bool) -> None:
    """Descriptors match by token prefix; '*' matches any event."""
    assert expected == matches(descriptors, name)


def test_event_json_round_trip() -> None:
    """An event survives to_json/from_json unchanged."""
    event = Event("a.b", {"k": [1]}, type="platform", sendid="s1", invokeid="i")
    assert event == Event.from_json(event.to_json())
