"""The Python datamodel: binding, system variables, scripts, if/foreach, Python callables."""

from __future__ import annotations

import json

from tests.statechart_helpers import labels, runner
from tripwright.flows.statechart import (
    Assign,
    Data,
    Event,
    Foreach,
    If,
    Log,
    Script,
    on,
    parallel,
    state,
    statechart,
)
from tripwright.flows.statechart.context import ActionContext
from tripwright.flows.statechart.interpreter import Interpreter


def test_early_binding_initialises_every_state_data_at_start(mode: str) -> None:
    """With early binding a nested state's data exists before the state is entered."""
    chart = statechart(
        "d",
        state("a", on("go", "b")),
        state("b", data=[Data("late_var", expr="40 + 2")]),
    )
    r = runner(chart, mode)
    r.start()
    assert r.datamodel == {"late_var": 42}


def test_late_binding_initialises_data_on_first_entry(mode: str) -> None:
    """With late binding a state's data is created when the state is first entered."""
    chart = statechart(
        "d",
        state("a", on("go", "b")),
        state("b", on("back", "a"), data=[Data("v", expr="1")], on_entry=Assign("v", expr="v + 1")),
        binding="late",
    )
    r = runner(chart, mode)
    r.start()
    assert r.datamodel == {}
    r.send("go")
    assert r.datamodel == {"v": 2}
    r.send("back")
    r.send("go")
    assert r.datamodel == {"v": 3}


def test_start_data_overrides_declared_values(mode: str) -> None:
    """Values given to start() replace declared initial values and may add variables."""
    chart = statechart("d", state("a"), data={"seats": 1, "city": "LIS"})
    r = runner(chart, mode)
    r.start({"seats": 4, "extra": [1]})
    assert r.datamodel == {"seats": 4, "city": "LIS", "extra": [1]}


def test_event_fields_are_visible_as_underscore_event() -> None:
    """_event exposes name, type, data and origin of the event being processed."""
    chart = statechart(
        "d",
        state(
            "a", on("pay", actions=Log(label="e", expr="[_event.name, _event.type, _event.data]"))
        ),
    )
    m = Interpreter(chart, session_id="s")
    m.start()
    [log] = m.send(Event("pay.card", {"amount": 5})).logs
    assert log.value == ["pay.card", "external", {"amount": 5}]


def test_system_variables_and_in(mode: str) -> None:
    """_sessionid, _name and In() are available to expressions."""
    chart = statechart(
        "trip",
        parallel(
            "p",
            state("r1", on_entry=Log(label="x", expr="[_sessionid, _name, In('r2'), In('zz')]")),
            state("r2"),
        ),
    )
    r = runner(chart, mode)
    r.start()
    # r2 is entered after r1 (document order), so In('r2') is still false in r1's entry.
    assert [e.value for e in r.log] == [["memory", "trip", False, False]]


def test_global_script_defines_helpers_kept_out_of_the_datamodel(mode: str) -> None:
    """Functions from the chart's script are usable in expressions but are not data."""
    chart = statechart(
        "d",
        state("a", on("go", actions=Assign("total", expr="with_tax(total)"))),
        data={"total": 100},
        script="def with_tax(x):\n    return round(x * 1.2)\n",
    )
    r = runner(chart, mode)
    r.start()
    r.send("go")
    r.send("go")
    assert r.datamodel == {"total": 144}


def test_script_binds_datamodel_variables(mode: str) -> None:
    """Names a script element assigns become datamodel variables."""
    chart = statechart("d", state("a", on_entry=Script("items = [1, 2]\ncount = len(items)")))
    r = runner(chart, mode)
    r.start()
    assert r.datamodel == {"items": [1, 2], "count": 2}


def test_if_elseif_else_runs_the_first_true_branch(mode: str) -> None:
    """Only the first branch whose condition holds runs; else runs when none does."""
    pick = If(
        branches=(("n > 10", (Log(label="big"),)), ("n > 1", (Log(label="medium"),))),
        orelse=(Log(label="small"),),
    )
    chart = statechart(
        "d",
        state("a", on("go", actions=[pick, Assign("n", expr="n * 5")])),
        data={"n": 1},
    )
    r = runner(chart, mode)
    r.start()
    for _ in range(3):
        r.send("go")
    assert labels(r) == ["small", "medium", "big"]


def test_foreach_iterates_a_copy_with_item_and_index(mode: str) -> None:
    """foreach binds item and index for each element of the array."""
    chart = statechart(
        "d",
        state(
            "a",
            on_entry=Foreach(
                array="legs",
                item="leg",
                index="i",
                actions=(Assign("out", expr="out + [f'{i}:{leg}']"),),
            ),
        ),
        data={"legs": ["LIS", "OPO"], "out": []},
    )
    r = runner(chart, mode)
    r.start()
    assert r.datamodel["out"] == ["0:LIS", "1:OPO"]


def test_python_guards_and_actions_get_the_context(mode: str) -> None:
    """Callables read and write ctx.data, see ctx.event, In() and raise events."""

    def enough(ctx: ActionContext) -> bool:
        assert ctx.event is not None
        return bool(ctx.data["seats"] >= ctx.event.data["want"])

    def take(ctx: ActionContext) -> None:
        assert ctx.event is not None
        ctx.data["seats"] = ctx.data["seats"] - ctx.event.data["want"]
        if ctx.In("open"):
            ctx.raise_event("taken", {"left": ctx.data["seats"]})

    chart = statechart(
        "d",
        state(
            "open",
            on("book", cond=enough, actions=take),
            on("taken", actions=Log(label="left", expr="_event.data['left']")),
        ),
        data={"seats": 3},
    )
    r = runner(chart, mode)
    r.start()
    r.send("book", {"want": 2})
    assert r.send("book", {"want": 2})[0].ignored
    assert [e.value for e in r.log] == [1]


def test_snapshot_is_pure_json_and_restores_identically() -> None:
    """A snapshot survives json round-trips, and the restored machine behaves the same."""
    chart = statechart(
        "d",
        state("a", on("go", "b", actions=Assign("n", expr="n + [len(n)]"))),
        state("b", on("go", "a")),
        data={"n": []},
    )
    m = Interpreter(chart, session_id="s")
    m.start()
    m.send(Event("go"))
    snap = m.snapshot()
    assert snap == json.loads(json.dumps(snap))
    twin = Interpreter.restore(chart, json.loads(json.dumps(snap)))
    for _ in range(3):
        assert m.send(Event("go")) == twin.send(Event("go"))
    assert m.snapshot() == twin.snapshot()
