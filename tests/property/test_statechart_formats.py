"""Property: random statecharts survive YAML and SCXML unchanged, and their dumps are stable."""

from __future__ import annotations

import itertools
import keyword
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tripwright.flows.statechart import (
    Assign,
    Cancel,
    Content,
    Data,
    DoneData,
    Executable,
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
    dump_yaml,
    load_scxml,
    load_yaml,
    to_scxml,
)

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
EVENTS = st.lists(NAMES, min_size=1, max_size=3).map(".".join)
#: Datamodel locations (a namelist's entries): names that are not Python keywords.
VARIABLES = NAMES.filter(lambda name: not keyword.iskeyword(name))
EXPRS = st.sampled_from(["1", "n + 1", "x > 2 and y", "_event.data", "In('a')", "[1, 2]"])
LOCATIONS = st.sampled_from(["n", "cart['items']", "trip.leg"])
SCRIPTS = st.sampled_from(["x = 1", "def f(v):\n    return v * 2\n", "import math\n"])
TEXT = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="\ufeff\x85\u2028\u2029"
    )
    | st.sampled_from(" \n\t"),
    max_size=12,
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=6,
)
DELAYS = st.sampled_from([0.5, 1.0, 30.0, 90.0, 900.0, 7200.0, 0.001, 86400.0, 12.25])


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


PARAMS = st.lists(
    st.builds(Param, NAMES, expr=EXPRS) | st.builds(Param, NAMES, location=LOCATIONS),
    max_size=2,
).map(tuple)
CONTENT = st.builds(Content, expr=EXPRS) | st.builds(
    Content, value=JSON.filter(lambda v: v is not None)
)


@st.composite
def sends(draw: st.DrawFn) -> Send:
    with_content = draw(st.booleans())
    return Send(
        event=draw(optional(EVENTS)),
        target=draw(optional(st.sampled_from(["#_parent", "#_internal", "#_kid"]))),
        type=draw(optional(st.sampled_from(["scxml"]))),
        id=draw(optional(NAMES)),
        delay=draw(optional(DELAYS)),
        namelist=() if with_content else tuple(draw(st.lists(VARIABLES, max_size=2))),
        params=() if with_content else draw(PARAMS),
        content=draw(CONTENT) if with_content else None,
    )


def leaf_actions() -> st.SearchStrategy[Executable]:
    return st.one_of(
        st.builds(Raise, EVENTS),
        sends(),
        st.builds(Cancel, sendid=NAMES) | st.builds(Cancel, sendidexpr=EXPRS),
        st.builds(Assign, LOCATIONS, expr=EXPRS)
        | st.builds(Assign, LOCATIONS, value=JSON.filter(lambda v: v is not None)),
        st.builds(Log, label=optional(TEXT.filter(str.strip)), expr=optional(EXPRS)),
        st.builds(Script, SCRIPTS),
    )


ACTIONS: st.SearchStrategy[tuple[Executable, ...]] = st.recursive(
    st.lists(leaf_actions(), max_size=2).map(tuple),
    lambda inner: st.lists(
        leaf_actions()
        | st.builds(
            If,
            branches=st.lists(st.tuples(EXPRS, inner), min_size=1, max_size=2).map(tuple),
            orelse=inner,
        )
        | st.builds(Foreach, array=EXPRS, item=NAMES, actions=inner, index=optional(NAMES)),
        max_size=2,
    ).map(tuple),
    max_leaves=3,
)
DATA = st.lists(
    st.builds(Data, NAMES, expr=EXPRS) | st.builds(Data, NAMES, value=JSON),
    max_size=2,
    unique_by=lambda d: d.id,
).map(tuple)


@st.composite
def transitions(draw: st.DrawFn, ids: list[str]) -> Transition:
    return Transition(
        events=tuple(draw(st.lists(EVENTS | st.just("*"), max_size=2))),
        cond=draw(optional(EXPRS)),
        targets=tuple(draw(st.lists(st.sampled_from(ids), max_size=2))),
        type=draw(st.sampled_from(["external", "internal"])),
        actions=draw(ACTIONS),
    )


@st.composite
def charts(draw: st.DrawFn, depth: int = 0) -> Statechart:
    counter = itertools.count()
    ids: list[str] = []

    def new_id() -> str:
        ids.append(f"s{next(counter)}")
        return ids[-1]

    def tree(level: int) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for _ in range(draw(st.integers(1, 3 if level == 0 else 2))):
            state_id = new_id()
            kind = draw(st.sampled_from(list(StateKind)[:3]))
            children = (
                tree(level + 1)
                if level < 2 and kind is not StateKind.FINAL and draw(st.booleans())
                else []
            )
            history = None
            with_history: bool = draw(st.booleans())
            if children and with_history:
                history = (new_id(), draw(st.sampled_from(["shallow", "deep"])))
            out.append((state_id, (kind, children, history)))
        return out

    shape = tree(0)

    def build(state_id: str, spec: Any) -> State:
        kind, children, history = spec
        kids = [build(i, s) for i, s in children]
        if history is not None:
            kids.insert(
                0,
                State(
                    history[0],
                    StateKind.HISTORY,
                    history=history[1],
                    transitions=tuple(
                        draw(
                            st.lists(
                                st.builds(
                                    Transition,
                                    targets=st.lists(
                                        st.sampled_from(ids), min_size=1, max_size=1
                                    ).map(tuple),
                                    actions=ACTIONS,
                                ),
                                max_size=1,
                            )
                        )
                    ),
                ),
            )
        final = kind is StateKind.FINAL
        initial = None
        if kind is StateKind.STATE and kids and draw(st.booleans()):
            initial = Transition(
                targets=(draw(st.sampled_from([k.id for k in kids])),),
                actions=draw(ACTIONS),
            )
        return State(
            id=state_id,
            kind=kind,
            children=tuple(kids),
            initial=initial,
            transitions=() if final else tuple(draw(st.lists(transitions(ids), max_size=2))),
            on_entry=tuple(draw(st.lists(ACTIONS, max_size=1))),
            on_exit=tuple(draw(st.lists(ACTIONS, max_size=1))),
            invokes=()
            if final or depth > 0
            else tuple(
                draw(
                    st.lists(
                        st.builds(
                            Invoke,
                            id=optional(NAMES),
                            type=st.sampled_from(["scxml", "saga"]),
                            src=optional(NAMES),
                            content=optional(charts(depth=1)),
                            params=PARAMS,
                            autoforward=st.booleans(),
                            finalize=ACTIONS,
                        ),
                        max_size=1,
                    )
                )
            ),
            datamodel=() if final else draw(DATA),
            donedata=draw(
                optional(st.builds(DoneData, params=PARAMS) | st.builds(DoneData, content=CONTENT))
            )
            if final
            else None,
        )

    states = tuple(build(i, s) for i, s in shape)
    return Statechart(
        name=draw(NAMES),
        states=states,
        initial=draw(optional(st.builds(Transition, targets=st.just((states[-1].id,))))),
        datamodel=draw(DATA),
        script=draw(optional(st.builds(Script, SCRIPTS))),
        binding=draw(st.sampled_from(["early", "late"])),
        version=draw(st.integers(1, 5)),
    )


SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.slow
@SETTINGS
@given(charts())
def test_yaml_round_trip(chart: Statechart) -> None:
    """Any chart dumps to YAML and loads back equal; dumping it again gives the same text."""
    text = dump_yaml(chart)
    assert load_yaml(text) == chart
    assert dump_yaml(load_yaml(text)) == text


@pytest.mark.slow
@SETTINGS
@given(charts())
def test_scxml_round_trip(chart: Statechart) -> None:
    """Any chart writes to SCXML and reads back equal; writing it again gives the same text."""
    text = to_scxml(chart)
    assert load_scxml(text) == chart
    assert to_scxml(load_scxml(text)) == text
