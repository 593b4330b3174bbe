"""SCXML documents: each element read into the model, written back, and malformed input."""

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
    on,
    state,
    statechart,
)
from tripwright.flows.statechart.scxml import format_delay, load_scxml, to_scxml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def doc(body: str, **attrs: str) -> str:
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return (
        '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" datamodel="python"'
        f' name="t"{extra}>\n{body}\n</scxml>\n'
    )


def first_state(body: str) -> State:
    return load_scxml(doc(body)).states[0]


def test_root_attributes() -> None:
    """The root's name, initial, binding and tw:version become the chart's fields."""
    text = (
        '<scxml xmlns="http://www.w3.org/2005/07/scxml" xmlns:tw="https://tripwright.dev/scxml"'
        ' version="1.0" name="trip" initial="b" binding="late" tw:version="3">'
        '<state id="a"/><state id="b"/></scxml>'
    )
    chart = load_scxml(text)
    assert (
        chart.name,
        chart.initial.targets if chart.initial else None,
        chart.binding,
        chart.version,
    ) == ("trip", ("b",), "late", 3)


def test_states_and_lines() -> None:
    """State, parallel, final and history elements nest, each with its source line."""
    chart = load_scxml(
        doc(
            '<state id="a" initial="a2">\n'
            '  <history id="h" type="deep"><transition target="a1"/></history>\n'
            '  <state id="a1"/>\n'
            '  <parallel id="a2"><state id="r1"/><state id="r2"/></parallel>\n'
            "</state>\n"
            '<final id="done"/>'
        )
    )
    a = chart.state("a")
    expected = [
        ("a", StateKind.STATE, 2),
        ("h", StateKind.HISTORY, 3),
        ("a1", StateKind.STATE, 4),
        ("a2", StateKind.PARALLEL, 5),
        ("r1", StateKind.STATE, 5),
        ("r2", StateKind.STATE, 5),
        ("done", StateKind.FINAL, 7),
    ]
    assert expected == [(s.id, s.kind, s.line) for s in chart.walk()]
    assert Transition(targets=("a2",)) == a.initial
    assert ("deep", (Transition(targets=("a1",)),)) == (
        chart.state("h").history,
        chart.state("h").transitions,
    )


def test_initial_element() -> None:
    """An <initial> element's transition, with its actions, is the state's initial."""
    s = first_state(
        '<state id="a"><initial><transition target="b"><log expr="1"/></transition></initial>'
        '<state id="b"/></state>'
    )
    assert Transition(targets=("b",), actions=(Log(expr="1"),)) == s.initial


def test_missing_ids_are_generated() -> None:
    """States without an id get a generated one that collides with no explicit id."""
    chart = load_scxml(doc('<state id="_state1"/><state/>'))
    assert chart.state_ids == ("_state1", "_state2")


def test_transition_attributes() -> None:
    """A transition's events, cond, targets and type are read."""
    s = first_state(
        '<state id="a"><transition event="x y.*" cond="n &gt; 1" target="a b" type="internal"/>'
        '<state id="b"/></state>'
    )
    assert Transition(("x", "y.*"), "n > 1", ("a", "b"), "internal") == s.transitions[0]


def test_executable_content() -> None:
    """Every kind of executable content is read into its model element."""
    s = first_state(
        '<state id="a"><onentry>'
        '<raise event="go"/>'
        '<send event="e" target="#_parent" type="scxml" id="t1" delay="1.5s" namelist="a b"/>'
        '<send eventexpr="name" idlocation="sid" delayexpr="d"><param name="p" expr="1"/>'
        '<param name="q" location="x"/></send>'
        '<send event="c"><content expr="payload"/></send>'
        '<send event="j"><content>{"k": [1, 2]}</content></send>'
        '<cancel sendid="t1"/><cancel sendidexpr="sid"/>'
        '<assign location="n" expr="n + 1"/><assign location="m">[1, 2]</assign>'
        '<log label="l" expr="n"/>'
        '<if cond="n &gt; 1"><raise event="big"/><elseif cond="n &gt; 0"/><raise event="one"/>'
        '<else/><raise event="none"/></if>'
        '<foreach array="items" item="it" index="i"><log expr="it"/></foreach>'
        "<script>total = n * 2</script>"
        "</onentry><onexit/><onexit><log expr='2'/></onexit></state>"
    )
    expected_entry = (
        Raise("go"),
        Send(event="e", target="#_parent", type="scxml", id="t1", delay=1.5, namelist=("a", "b")),
        Send(
            eventexpr="name",
            idlocation="sid",
            delayexpr="d",
            params=(Param("p", expr="1"), Param("q", location="x")),
        ),
        Send(event="c", content=Content(expr="payload")),
        Send(event="j", content=Content(value={"k": [1, 2]})),
        Cancel(sendid="t1"),
        Cancel(sendidexpr="sid"),
        Assign("n", expr="n + 1"),
        Assign("m", value=[1, 2]),
        Log("l", "n"),
        If(
            branches=(("n > 1", (Raise("big"),)), ("n > 0", (Raise("one"),))),
            orelse=(Raise("none"),),
        ),
        Foreach(array="items", item="it", index="i", actions=(Log(expr="it"),)),
        Script("total = n * 2"),
    )
    assert ((expected_entry,), ((), (Log(expr="2"),))) == (s.on_entry, s.on_exit)


def test_datamodel_and_donedata() -> None:
    """Data with expr or inline JSON, per state and global; final donedata params/content."""
    chart = load_scxml(
        doc(
            '<datamodel><data id="a" expr="1 + 1"/><data id="b">{"x": 1}</data>'
            "<data id='c'>plain text</data></datamodel>"
            '<state id="s"><datamodel><data id="d"/></datamodel></state>'
            '<final id="f"><donedata><param name="r" expr="a"/></donedata></final>'
            '<final id="g"><donedata><content expr="b"/></donedata></final>'
        )
    )
    assert (
        Data("a", expr="1 + 1"),
        Data("b", value={"x": 1}),
        Data("c", value="plain text"),
    ) == chart.datamodel
    assert (Data("d"),) == chart.state("s").datamodel
    assert DoneData(params=(Param("r", expr="a"),)) == chart.state("f").donedata
    assert DoneData(content=Content(expr="b")) == chart.state("g").donedata


def test_invoke_with_inline_child() -> None:
    """An invoke's attributes, params, finalize and inline child document are read."""
    s = first_state(
        '<state id="a"><invoke id="kid" autoforward="true" namelist="n">'
        '<finalize><assign location="n" expr="_event.data"/></finalize>'
        '<content><scxml version="1.0" name="child"><final id="end"/></scxml></content>'
        "</invoke>"
        '<invoke type="saga" srcexpr="flow" idlocation="where"><param name="p" expr="1"/>'
        "</invoke></state>"
    )
    child = Statechart(name="child", states=(State("end", StateKind.FINAL),))
    assert (
        Invoke(
            id="kid",
            autoforward=True,
            namelist=("n",),
            finalize=(Assign("n", expr="_event.data"),),
            content=child,
        ),
        Invoke(type="saga", srcexpr="flow", idlocation="where", params=(Param("p", expr="1"),)),
    ) == s.invokes


def test_example_round_trips() -> None:
    """The booking example reads, writes and reads back to the same chart."""
    chart = load_scxml((EXAMPLES / "booking.scxml").read_text(), name="booking")
    assert chart == load_scxml(to_scxml(chart))


def test_python_api_chart_round_trips() -> None:
    """A Python API chart with timers and expression guards survives to_scxml/load_scxml."""
    chart = statechart(
        "b",
        state("q", on("hold", "h", cond="seats > 0")),
        state("h", on("pay", "p"), after("15m", "x"), on_entry=Log("in", "1")),
        final("p"),
        final("x", donedata={"ok": "True"}),
        data={"seats": 2},
        version=4,
    )
    assert chart == load_scxml(to_scxml(chart))


def test_callables_cannot_be_written() -> None:
    """A chart with a Python callable guard cannot be written as SCXML: the state is named."""
    chart = statechart("c", state("a", on("go", "b", cond=lambda ctx: True)), final("b"))
    with pytest.raises(StatechartError, match="'a' is a Python callable") as caught:
        to_scxml(chart)
    assert caught.value.element == "a"


def test_format_delay_uses_exact_units() -> None:
    """Delays are written in the largest unit that keeps them exact."""
    assert [format_delay(d) for d in (7200, 900, 90, 0.25, 86400, 0.00001)] == [
        "2h",
        "15m",
        "90s",
        "0.25s",
        "1d",
        "0.00001s",
    ]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (doc('<state id="a">\n<transition target="a"/></stat>'), 3, "mismatched tag"),
        (doc('<state id="a"/>\n<stat id="b"/>'), 3, "unknown SCXML element"),
        (doc('<state id="a">\n<transition tagret="a"/></state>'), 3, "unknown attribute 'tagret'"),
        (doc('<state id="a"><onentry>\n<raise/></onentry></state>'), 3, "missing required"),
        (
            doc('<state id="a">\n<transition cond="x &gt;" target="a"/></state>'),
            3,
            "invalid Python",
        ),
        (
            doc('<state id="a"><onentry>\n<assign location="1" expr="2"/></onentry></state>'),
            3,
            "not an assignable location",
        ),
        (
            doc('<state id="a"><onentry>\n<send event="e" delay="soon"/></onentry></state>'),
            3,
            "not a delay",
        ),
        (doc('<state id="a"><onentry>\n<cancel/></onentry></state>'), 3, "sendid"),
        (doc('<state id="a">\n<parallel id="a"/></state>'), 3, "duplicate state id"),
        (
            doc('<state id="a"><onentry>\n<send event="e" eventexpr="x"/></onentry></state>'),
            3,
            "exclude each other",
        ),
        (doc('<state id="a">\n<transition type="sideways"/></state>'), 3, "type must be"),
        (doc('<state id="a">\n<history id="h" type="wide"/></state>'), 3, "type must be"),
        (doc('\n<datamodel><data id="x" src="f.json"/></datamodel><state id="a"/>'), 3, "src"),
        (doc('\n<state id="a">text</state>'), 3, "unexpected text"),
        (
            doc('<state id="a">\n<final id="f"/>\n</state>').replace(
                'datamodel="python"', 'datamodel="ecmascript"'
            ),
            1,
            "only the 'python' datamodel",
        ),
    ],
)
def test_malformed_documents_cite_line_and_reason(text: str, line: int, reason: str) -> None:
    """A malformed document raises StatechartError with the line and the reason."""
    with pytest.raises(StatechartError, match=reason) as caught:
        load_scxml(text)
    assert line == caught.value.line


def test_doctype_is_refused() -> None:
    """Documents declaring a DTD (and so entities) are refused before anything expands."""
    text = (
        '<?xml version="1.0"?>\n<!DOCTYPE scxml [<!ENTITY a "aaaa">]>\n'
        '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0"><state id="&a;"/></scxml>'
    )
    with pytest.raises(StatechartError, match="document type declarations") as caught:
        load_scxml(text)
    assert caught.value.line == 2


def test_foreign_namespaces_are_ignored() -> None:
    """Elements and attributes of other namespaces are ignored, as the recommendation allows."""
    chart = load_scxml(
        doc(
            '<state id="a" x:note="n"><x:extra><anything/></x:extra></state>',
            **{"xmlns:x": "urn:x"},
        )
    )
    assert (State("a"),) == chart.states


def test_script_is_dedented() -> None:
    """An indented <script> body is dedented so that it compiles."""
    chart = load_scxml(doc('<script>\n    def f(x):\n        return x\n</script><state id="a"/>'))
    assert chart.script is not None
    compile(chart.script.source, "script", "exec")
