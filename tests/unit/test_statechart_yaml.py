"""The YAML form: each construct loaded into the model, dumped back, and malformed input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripwright.errors import StatechartError
from tripwright.flows.statechart import (
    Assign,
    Cancel,
    Content,
    Data,
    DoneData,
    Foreach,
    If,
    Invoke,
    Log,
    Param,
    Raise,
    Script,
    Send,
    State,
    Statechart,
    StateKind,
    Transition,
    after,
    final,
    history,
    on,
    parallel,
    state,
    statechart,
)
from tripwright.flows.statechart.scxml import load_scxml
from tripwright.flows.statechart.yaml import dump_yaml, load_yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_states_transitions_and_lines() -> None:
    """States nest by id with their kinds; transitions keep order; elements keep lines."""
    chart = load_yaml(
        "statechart: t\n"
        "initial: a\n"
        "states:\n"
        "  a:\n"
        "    initial: a2\n"
        "    states:\n"
        "      h: {type: history, history: deep, default: a1}\n"
        "      a1: {}\n"
        "      a2:\n"
        "        type: parallel\n"
        "        states: {r1: null, r2: {}}\n"
        "    on:\n"
        "      - {event: x y, cond: n > 1, target: done}\n"
        "      - {target: a1, type: internal}\n"
        "  done: {type: final}\n"
    )
    assert [(s.id, s.kind, s.line) for s in chart.walk()] == [
        ("a", StateKind.STATE, 4),
        ("h", StateKind.HISTORY, 7),
        ("a1", StateKind.STATE, 8),
        ("a2", StateKind.PARALLEL, 9),
        ("r1", StateKind.STATE, 11),
        ("r2", StateKind.STATE, 11),
        ("done", StateKind.FINAL, 15),
    ]
    a = chart.state("a")
    assert (
        Transition(("x", "y"), "n > 1", ("done",)),
        Transition(targets=("a1",), type="internal"),
    ) == a.transitions
    assert [t.line for t in a.transitions] == [13, 14]
    assert (Transition(targets=("a1",)),) == chart.state("h").transitions


def test_actions_and_data() -> None:
    """Every action kind, data literals and expressions, donedata and invoke are read."""
    chart = load_yaml(
        """
statechart: t
data:
  n: 1
  cart: {value: {items: []}}
  when: {expr: "n + 1"}
states:
  a:
    entry:
      - raise: go
      - send: {event: e, target: "#_parent", id: t1, delay: 1500ms, namelist: [n]}
      - send: {eventexpr: name, idlocation: sid, params: {p: "1"}}
      - send: {event: c, content: {expr: payload}}
      - send: {event: j, params: [{name: q, location: n}]}
      - cancel: t1
      - cancel: {sendidexpr: sid}
      - assign: {location: n, expr: n + 1}
      - assign: {location: cart, value: [1, 2]}
      - log: {label: l, expr: n}
      - if:
          - {cond: n > 1, actions: [raise: big]}
          - {cond: n > 0, actions: [raise: one]}
        else: [raise: none]
      - foreach: {array: items, item: it, index: i, actions: [log: {expr: it}]}
      - script: |
          total = n * 2
    exit: [[], [log: {expr: "2"}]]
    invoke:
      - id: kid
        autoforward: true
        finalize: [assign: {location: n, expr: _event.data}]
        content:
          statechart: child
          states: {end: {type: final}}
  f:
    type: final
    donedata: {content: {value: {ok: true}}}
"""
    )
    a = chart.state("a")
    assert (
        Data("n", value=1),
        Data("cart", value={"items": []}),
        Data("when", expr="n + 1"),
    ) == chart.datamodel
    assert (
        (
            Raise("go"),
            Send(event="e", target="#_parent", id="t1", delay=1.5, namelist=("n",)),
            Send(eventexpr="name", idlocation="sid", params=(Param("p", expr="1"),)),
            Send(event="c", content=Content(expr="payload")),
            Send(event="j", params=(Param("q", location="n"),)),
            Cancel(sendid="t1"),
            Cancel(sendidexpr="sid"),
            Assign("n", expr="n + 1"),
            Assign("cart", value=[1, 2]),
            Log("l", "n"),
            If(
                branches=(("n > 1", (Raise("big"),)), ("n > 0", (Raise("one"),))),
                orelse=(Raise("none"),),
            ),
            Foreach(array="items", item="it", index="i", actions=(Log(expr="it"),)),
            Script("total = n * 2\n"),
        ),
    ) == a.on_entry
    assert ((), (Log(expr="2"),)) == a.on_exit
    assert (
        Invoke(
            id="kid",
            autoforward=True,
            finalize=(Assign("n", expr="_event.data"),),
            content=Statechart("child", (State("end", StateKind.FINAL),)),
        ),
    ) == a.invokes
    assert DoneData(content=Content(value={"ok": True})) == chart.state("f").donedata


def test_after_is_the_python_api_timer() -> None:
    """``after:`` builds exactly what the Python API's after() builds."""
    loaded = load_yaml(
        "statechart: b\n"
        "states:\n"
        "  held:\n"
        "    entry: [log: {label: in}]\n"
        "    after:\n"
        "      15m: expired\n"
        "      2h: {target: lost, cond: 'True'}\n"
        "    on: [{event: pay, target: paid}]\n"
        "  paid: {type: final}\n"
        "  expired: {type: final}\n"
        "  lost: {type: final}\n"
    )
    built = statechart(
        "b",
        state(
            "held",
            on("pay", "paid"),
            after("15m", "expired"),
            after("2h", "lost", cond="True"),
            on_entry=Log("in"),
        ),
        final("paid"),
        final("expired"),
        final("lost"),
    )
    assert built == loaded
    assert "after:" in dump_yaml(built)


def test_round_trip_is_exact_and_stable() -> None:
    """load(dump(c)) == c and dumping the loaded chart gives the same text."""
    chart = statechart(
        "r",
        state(
            "a",
            history("ah", "a1", deep=True),
            state("a1", on("next", "a2", internal=True)),
            parallel("a2", state("x"), state("y")),
            after(30, "done"),
            initial="a1",
            data={"n": 0, "d": {"k": "v"}},
        ),
        final("done", donedata={"r": "n"}),
        script="import math\n\ndef f(x):\n    return x\n",
        binding="late",
        version=2,
    )
    text = dump_yaml(chart)
    assert chart == load_yaml(text)
    assert text == dump_yaml(load_yaml(text))


def test_examples_agree() -> None:
    """The YAML, SCXML and Python API forms of the booking example are the same chart."""
    from tests.e2e.sample_charts import booking

    from_scxml = load_scxml((EXAMPLES / "booking.scxml").read_text())
    from_yaml = load_yaml((EXAMPLES / "booking.yaml").read_text())
    assert (from_scxml, from_yaml) == (booking, booking)


def test_callables_cannot_be_dumped() -> None:
    """A chart with a Python callable action cannot be dumped: the state is named."""
    chart = statechart("c", state("a", on("go", "b", actions=print)), final("b"))
    with pytest.raises(StatechartError, match="'a' is a Python callable"):
        dump_yaml(chart)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("statechart: t\nstates:\n  a: {on: [{event: x\n", 4, "not valid YAML"),
        ("statechart: t\nstates:\n  a:\n    onn: []\n", 4, "unknown key 'onn'"),
        ("statechart: t\nstates:\n  a:\n    on:\n      - {evnt: x}\n", 5, "unknown key 'evnt'"),
        ("statechart: t\nstates:\n  a:\n    on:\n      - {cond: 'x >'}\n", 5, "invalid Python"),
        ("statechart: t\nstates:\n  a:\n    type: weird\n", 4, "type must be"),
        ("statechart: t\nstates:\n  a:\n    entry:\n      - {shout: x}\n", 5, "one key of"),
        ("statechart: t\nstates:\n  a:\n    after: {soon: b}\n", 4, "not a delay"),
        ("statechart: t\nstates:\n  a: {}\n  a: {}\n", 4, "duplicate key 'a'"),
        ("statechart: t\nstates:\n  a:\n    states: {a: {}}\n", 4, "duplicate state id"),
        ("statechart: t\nstates:\n  f:\n    type: final\n    on: []\n", 5, "has no 'on'"),
        ("states:\n  a: {}\n", 1, "missing required key 'statechart'"),
        ("statechart: t\nstates:\n  a:\n    entry:\n      - assign: {expr: '1'}\n", 5, "location"),
    ],
)
def test_malformed_documents_cite_line_and_reason(text: str, line: int, reason: str) -> None:
    """A malformed document raises StatechartError with the line and the reason."""
    with pytest.raises(StatechartError, match=reason) as caught:
        load_yaml(text)
    assert line == caught.value.line


def test_on_and_yes_are_text() -> None:
    """``on``, ``yes`` and ``no`` are text, not booleans, in the YAML form."""
    chart = load_yaml("statechart: t\ndata: {answer: yes}\nstates:\n  a: {on: []}\n")
    assert (Data("answer", value="yes"),) == chart.datamodel
