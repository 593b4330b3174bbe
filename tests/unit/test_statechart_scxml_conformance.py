"""SCXML documents in the style of the W3C implementation report tests, run by the interpreter.

Each document ends in the final state ``pass`` when the recommendation's behaviour holds
and in ``fail`` otherwise; the documents use the Python datamodel.
"""

from __future__ import annotations

import pytest

from tripwright.flows.statechart import load_scxml, simulate

HEAD = '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" datamodel="python"'
TAIL = '<final id="pass"/><final id="fail"/></scxml>'

DOCUMENTS = {
    "raised events are processed in the order raised": f"""{HEAD} initial="s0">
      <state id="s0">
        <onentry><raise event="foo"/><raise event="bar"/></onentry>
        <transition event="foo" target="s1"/>
        <transition event="*" target="fail"/>
      </state>
      <state id="s1">
        <transition event="bar" target="pass"/>
        <transition event="*" target="fail"/>
      </state>{TAIL}""",
    "the first enabled transition in document order wins": f"""{HEAD}>
      <state id="s0">
        <onentry><raise event="go"/></onentry>
        <transition event="go" cond="False" target="fail"/>
        <transition event="go" target="pass"/>
        <transition event="go" target="fail"/>
      </state>{TAIL}""",
    "if/elseif/else runs exactly the first true branch": f"""{HEAD}>
      <datamodel><data id="n" expr="0"/></datamodel>
      <state id="s0">
        <onentry>
          <if cond="False"><assign location="n" expr="n + 100"/>
          <elseif cond="True"/><assign location="n" expr="n + 1"/>
          <elseif cond="True"/><assign location="n" expr="n + 10"/>
          <else/><assign location="n" expr="n + 1000"/></if>
        </onentry>
        <transition cond="n == 1" target="pass"/>
        <transition target="fail"/>
      </state>{TAIL}""",
    "a cancelled delayed send is never delivered": f"""{HEAD}>
      <state id="s0">
        <onentry>
          <send event="event1" id="foo" delay="1s"/>
          <send event="event2" delay="1.5s"/>
          <cancel sendid="foo"/>
        </onentry>
        <transition event="event2" target="pass"/>
        <transition event="*" target="fail"/>
      </state>{TAIL}""",
    "delayexpr and an idlocation-generated send id work with cancel": f"""{HEAD}>
      <datamodel><data id="sid" expr="None"/><data id="d" expr="'2s'"/></datamodel>
      <state id="s0">
        <onentry>
          <send event="late" idlocation="sid" delayexpr="d"/>
          <send event="check" delay="1s"/>
        </onentry>
        <transition event="check" cond="sid is not None" target="s1">
          <cancel sendidexpr="sid"/>
          <send event="done" delay="5s"/>
        </transition>
        <transition event="*" target="fail"/>
      </state>
      <state id="s1">
        <transition event="done" target="pass"/>
        <transition event="*" target="fail"/>
      </state>{TAIL}""",
    "reaching a final child raises done.state with its donedata": f"""{HEAD}>
      <state id="s0" initial="s01">
        <state id="s01"><transition target="s02"/></state>
        <final id="s02"><donedata><param name="code" expr="7"/></donedata></final>
        <transition event="done.state.s0" cond="_event.data == {{'code': 7}}" target="pass"/>
        <transition event="*" target="fail"/>
      </state>{TAIL}""",
    "a parallel state is done when every region is in a final state": f"""{HEAD}>
      <parallel id="p">
        <state id="r1"><state id="a"><transition event="go" target="a_end"/></state>
          <final id="a_end"/></state>
        <state id="r2"><state id="b"><transition event="go" target="b_end"/></state>
          <final id="b_end"/></state>
        <onentry><raise event="go"/></onentry>
        <transition event="done.state.p" target="pass"/>
        <transition event="done.state.r1" cond="not In('b_end')" target="wait"/>
      </parallel>
      <state id="wait"><transition target="fail"/></state>{TAIL}""",
    "deep history restores the nested configuration": f"""{HEAD}>
      <datamodel><data id="visits" expr="0"/></datamodel>
      <state id="work" initial="a">
        <history id="h" type="deep"><transition target="a"/></history>
        <state id="a" initial="a1">
          <state id="a1"><transition event="next" target="a2"/></state>
          <state id="a2"/>
        </state>
        <onentry><assign location="visits" expr="visits + 1"/></onentry>
        <transition event="pause" target="paused"/>
        <transition event="check" cond="In('a2') and visits == 2" target="pass"/>
        <transition event="check" target="fail"/>
      </state>
      <state id="paused"><transition event="resume" target="h"/></state>
      <state id="begin"/>{TAIL}""",
    "an error in an expression raises error.execution": f"""{HEAD}>
      <datamodel><data id="x" expr="0"/></datamodel>
      <state id="s0">
        <onentry><assign location="x" expr="undefined_name + 1"/></onentry>
        <transition event="error.execution" target="pass"/>
        <transition event="*" target="fail"/>
      </state>{TAIL}""",
    "foreach visits every item with its index": f"""{HEAD}>
      <datamodel><data id="total" expr="0"/><data id="items">[1, 2, 3]</data>
        <data id="item"/><data id="i"/></datamodel>
      <state id="s0">
        <onentry><foreach array="items" item="item" index="i">
          <assign location="total" expr="total + item * (i + 1)"/></foreach></onentry>
        <transition cond="total == 14" target="pass"/>
        <transition target="fail"/>
      </state>{TAIL}""",
    "send params arrive as _event.data": f"""{HEAD}>
      <datamodel><data id="amount" expr="120"/></datamodel>
      <state id="s0">
        <onentry><send event="paid" namelist="amount"><param name="currency" expr="'EUR'"/>
        </send></onentry>
        <transition event="paid" cond="_event.data == {{'amount': 120, 'currency': 'EUR'}}"
                    target="pass"/>
        <transition event="*" target="fail"/>
      </state>{TAIL}""",
    "late binding initialises a state's data when it is first entered": f"""{HEAD}
        binding="late">
      <datamodel><data id="n" expr="1"/></datamodel>
      <state id="s0">
        <onentry><assign location="n" expr="41"/></onentry>
        <transition target="s1"/>
      </state>
      <state id="s1">
        <datamodel><data id="v" expr="n + 1"/></datamodel>
        <transition cond="v == 42" target="pass"/>
        <transition target="fail"/>
      </state>{TAIL}""",
}

EVENTS = {
    "deep history restores the nested configuration": [
        (1.0, "next", None),
        (2.0, "pause", None),
        (3.0, "resume", None),
        (4.0, "check", None),
    ],
}


@pytest.mark.parametrize("behaviour", sorted(DOCUMENTS))
def test_document_reaches_pass(behaviour: str) -> None:
    """The SCXML document for this behaviour ends in its pass state."""
    chart = load_scxml(DOCUMENTS[behaviour])
    result = simulate(chart, EVENTS.get(behaviour, []), max_time=60)
    assert (result.configuration, result.terminated) == (("pass",), True)
