"""Errors in content and expressions become error.execution events, never crashes."""

from __future__ import annotations

import pytest

from tests.statechart_helpers import labels, runner
from tripwright.errors import StatechartError
from tripwright.flows.statechart import (
    Assign,
    Event,
    Log,
    Raise,
    Send,
    State,
    on,
    state,
    statechart,
)
from tripwright.flows.statechart.context import ActionContext
from tripwright.flows.statechart.interpreter import Interpreter


def test_failing_assign_stops_its_block_and_raises_error_execution(mode: str) -> None:
    """An assign that fails skips the rest of its block and puts error.execution first."""
    chart = statechart(
        "e",
        state(
            "a",
            on(
                "go",
                "b",
                actions=[Log(label="before"), Assign("n", expr="1 / 0"), Log(label="never")],
            ),
        ),
        state("b", on("error.execution", "failed"), on_entry=Log(label="entered b")),
        state("failed"),
        data={"n": 0},
    )
    r = runner(chart, mode)
    r.start()
    step = r.send("go")[0]
    assert labels(r) == ["before", "entered b"]
    assert r.configuration == ("failed",)
    [error] = step.errors
    assert (error.event, error.state) == ("error.execution", "a")
    assert error.message.startswith("ZeroDivisionError")


def test_failing_condition_counts_as_false(mode: str) -> None:
    """A condition that raises is false, and error.execution is raised."""
    chart = statechart(
        "e",
        state("a", on("go", "b", cond="missing > 1"), on("go", "c"), on("error.execution", "d")),
        state("b"),
        state("c", on("error.execution", "d")),
        state("d"),
    )
    r = runner(chart, mode)
    r.start()
    step = r.send("go")[0]
    assert r.configuration == ("d",)
    assert "NameError" in (step.microsteps[0].guards[0].error or "")


def test_non_json_assign_is_an_execution_error(mode: str) -> None:
    """Assigning a value that is not JSON data fails the assign, not the machine."""
    chart = statechart(
        "e",
        state("a", on("go", actions=Assign("n", expr="object()")), on("error.execution", "b")),
        state("b"),
        data={"n": 0},
    )
    r = runner(chart, mode)
    r.start()
    r.send("go")
    assert (r.configuration, r.datamodel["n"]) == (("b",), 0)


def test_assign_to_undeclared_variable_is_an_execution_error(mode: str) -> None:
    """An assign to a location that is not in the datamodel raises error.execution."""
    chart = statechart(
        "e",
        state("a", on("go", actions=Assign("nope", expr="1")), on("error.execution", "b")),
        state("b"),
    )
    r = runner(chart, mode)
    r.start()
    r.send("go")
    assert r.configuration == ("b",)


def test_python_action_that_raises_is_an_execution_error(mode: str) -> None:
    """An exception from a Python action becomes error.execution with its message."""

    def boom(ctx: ActionContext) -> None:
        raise RuntimeError("card declined")

    chart = statechart(
        "e",
        state("a", on("go", actions=boom), on("error.execution", "b")),
        state("b"),
    )
    r = runner(chart, mode)
    r.start()
    step = r.send("go")[0]
    assert r.configuration == ("b",)
    assert [e.message for e in step.errors] == ["RuntimeError: card declined"]


def test_python_action_storing_non_json_fails(mode: str) -> None:
    """ctx.data refuses a non-JSON value: the action fails with error.execution."""

    def store(ctx: ActionContext) -> None:
        ctx.data["n"] = {1, 2}

    chart = statechart(
        "e",
        state("a", on("go", actions=store), on("error.execution", "b")),
        state("b"),
        data={"n": 0},
    )
    r = runner(chart, mode)
    r.start()
    r.send("go")
    assert (r.configuration, r.datamodel["n"]) == (("b",), 0)


def test_error_event_data_says_what_failed() -> None:
    """error.execution's data carries the message, the state and the line."""
    chart = statechart(
        "e",
        state(
            "a",
            on("go", actions=Assign("n", expr="1 / 0", line=12)),
            on("error.*", actions=Log(label="err", expr="_event.data")),
        ),
        data={"n": 0},
    )
    m = Interpreter(chart, session_id="s")
    m.start()
    [log] = m.send(Event("go")).logs
    assert log.value == {"message": "ZeroDivisionError: division by zero", "state": "a", "line": 12}


def test_syntax_error_is_a_definition_error_with_line() -> None:
    """A condition that is not valid Python is refused when the chart is compiled."""
    chart = statechart("e", state("a", on("go", "a", cond="n >")))
    with pytest.raises(StatechartError, match="invalid Python expression"):
        Interpreter(chart, session_id="s")


def test_unknown_target_is_a_definition_error() -> None:
    """A transition to a state that does not exist is refused at compile time."""
    chart = statechart("e", state("a", on("go", "nowhere")))
    with pytest.raises(StatechartError, match="unknown state 'nowhere'"):
        Interpreter(chart, session_id="s")


def test_error_in_one_entry_block_does_not_stop_other_blocks(mode: str) -> None:
    """Each onentry block is separate: a failure in one leaves the next ones running."""
    chart = statechart(
        "e",
        State(
            "a",
            on_entry=((Raise("x"), Assign("n", expr="1/0"), Log(label="no")), (Log(label="yes"),)),
        ),
        data={"n": 0},
    )
    r = runner(chart, mode)
    r.start()
    assert labels(r) == ["yes"]


def test_send_with_bad_event_expression_is_an_execution_error(mode: str) -> None:
    """A send whose eventexpr fails sends nothing and raises error.execution."""
    chart = statechart(
        "e",
        state("a", on("go", actions=Send(eventexpr="undefined_name")), on("error.execution", "b")),
        state("b"),
    )
    r = runner(chart, mode)
    r.start()
    r.send("go")
    assert r.configuration == ("b",)
