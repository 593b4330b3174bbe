"""Mermaid stateDiagram-v2 drawings of statecharts."""

from __future__ import annotations

from tripwright.flows.statechart import (
    Send,
    after,
    final,
    history,
    on,
    parallel,
    state,
    statechart,
)
from tripwright.flows.statechart.mermaid import to_mermaid


def test_flat_chart_with_guard_and_timer() -> None:
    """States, the initial, finals, guarded and timed transitions are drawn in order."""
    chart = statechart(
        "b",
        state("quoted", on("hold", "held", cond="seats > 0")),
        state("held", on("pay", "paid"), after("15m", "expired")),
        final("paid"),
        final("expired"),
    )
    assert to_mermaid(chart) == (
        "stateDiagram-v2\n"
        "    [*] --> quoted\n"
        "    quoted\n"
        "    held\n"
        "    paid --> [*]\n"
        "    expired --> [*]\n"
        "    quoted --> held : hold [seats > 0]\n"
        "    held --> paid : pay\n"
        "    held --> expired : after 15m\n"
    )


def test_nesting_parallel_regions_and_history() -> None:
    """Compound states nest, parallel regions are separated by --, history is H or H*."""
    chart = statechart(
        "n",
        state(
            "work",
            history("back", "a", deep=True),
            state("a", on("next", "b")),
            parallel("b", state("r1"), state("r2", on("x", "done"))),
            initial="a",
        ),
        final("done"),
    )
    text = to_mermaid(chart)
    assert (
        "    state work {\n"
        "        [*] --> a\n"
        '        state "H*" as back\n'
        "        a\n"
        "        state b {\n"
        "            [*] --> r1\n"
        "            r1\n"
        "            --\n"
        "            [*] --> r2\n"
        "            r2\n"
        "        }\n"
        "    }\n"
    ) in text
    assert "    back --> a\n" in text
    assert "    r2 --> done : x\n" in text


def test_ids_mermaid_cannot_take_are_aliased() -> None:
    """Ids with dots, dashes or reserved words get an alias with the id as its label."""
    chart = statechart("a", state("hold-on", on("go", "end")), final("end"))
    text = to_mermaid(chart)
    assert 'state "hold-on" as s0\n' in text
    assert "s0 --> s1 : go\n" in text
    assert 'state "end" as s1\n' in text


def test_other_delayed_sends_are_notes() -> None:
    """A delayed send that no transition of its state listens to is shown as a note."""
    chart = statechart(
        "t",
        state("a", on("go", "f"), on_entry=Send(event="remind", id="r", delay=3600)),
        final("f"),
    )
    assert "    note right of a : after 1h sends remind\n" in to_mermaid(chart)


def test_configuration_is_highlighted() -> None:
    """The active states given are highlighted with a classDef."""
    chart = statechart("c", state("p", state("x"), on("go", "f")), final("f"))
    text = to_mermaid(chart, active=["p", "x"])
    assert text.endswith(
        "    classDef active fill:#fde68a,stroke:#b45309,stroke-width:2px\n"
        "    class p active\n"
        "    class x active\n"
    )
