"""Consumer groups and choreographies as definitions: checks, validation, diagrams."""

from __future__ import annotations

import pytest

from tripwright.bus import Event
from tripwright.errors import DefinitionError, EventSchemaError
from tripwright.flows.events import Choreography, ConsumerGroup, HandlerContext, mailbox_id


class Asked(Event):
    type_name = "loop.asked"


class Answered(Event):
    type_name = "loop.answered"


class Closed(Event):
    type_name = "loop.closed"


class Versioned(Event):
    type_name = "versioned.event"
    version = 2
    x: int


async def _noop(event: Event, ctx: HandlerContext) -> None:
    return None


def _group(name: str, consumes: type[Event], publishes: tuple[type[Event], ...]) -> ConsumerGroup:
    group = ConsumerGroup(name)
    group.add_handler(f"on_{name}", _noop, [consumes], publishes=publishes)
    return group


def test_a_cycle_with_an_exit_is_a_warning_and_one_without_an_error() -> None:
    """Handlers re-triggering each other are an error unless one can publish its way out."""
    endless = Choreography(
        "endless",
        [_group("a", Asked, (Answered,)), _group("b", Answered, (Asked,))],
        external=(Asked,),
    )
    [finding] = endless.validate()
    assert finding.severity == "error"
    assert finding.message.startswith("cycle with no end: loop.answered -> loop.asked")
    ending = Choreography(
        "ending",
        [_group("a", Asked, (Answered,)), _group("b", Answered, (Asked, Closed))],
        external=(Asked,),
    )
    found = {(f.severity, f.message) for f in ending.validate()}
    assert ("warning", "'loop.closed' is published but nobody consumes it") in found
    assert (
        "warning",
        "cycle loop.answered -> loop.asked: it ends only when a handler publishes "
        "loop.closed (or nothing)",
    ) in found


def test_a_handler_that_republishes_its_own_type_is_a_cycle() -> None:
    """A self-loop counts as a cycle too."""
    [finding] = Choreography("self", [_group("a", Asked, (Asked,))], external=(Asked,)).validate()
    assert finding.severity == "error"


def test_group_definitions_are_checked() -> None:
    """A type handled twice in a group, or a handler consuming nothing, is refused."""
    group = _group("g", Asked, ())
    with pytest.raises(DefinitionError, match="handled twice"):
        group.add_handler("again", _noop, [Asked])
    with pytest.raises(DefinitionError, match="consumes nothing"):
        group.add_handler("idle", _noop, [])
    with pytest.raises(DefinitionError, match="groups twice"):
        Choreography("dup", [group, group])


def test_upcasters_are_checked_and_chained() -> None:
    """Upcasters lift data step by step; a newer version is refused with the reason."""

    class Chained(Event):
        type_name = "chained.event"
        version = 3
        x: int

    @Chained.upcaster(1)
    def _one(data: dict[str, int]) -> dict[str, int]:
        return {"x": data["old"]}

    @Chained.upcaster(2)
    def _two(data: dict[str, int]) -> dict[str, int]:
        return {"x": data["x"] * 10}

    assert Chained.upcast({"old": 7}, 1) == {"x": 70}
    with pytest.raises(EventSchemaError, match="newer"):
        Chained.upcast({"x": 1}, 4)
    with pytest.raises(DefinitionError):
        Chained.upcaster(3)
    assert Versioned.upcasters == {}


def test_mailbox_ids_are_deterministic_and_distinct() -> None:
    """A (group, subject) always maps to the same mailbox, and different ones do not."""
    assert mailbox_id("g", "T-1") == mailbox_id("g", "T-1")
    assert len({mailbox_id("g", "T-1"), mailbox_id("h", "T-1"), mailbox_id("g", "T-2")}) == 3
    assert len(mailbox_id("g" * 200, "s" * 200)) <= 64


def test_diagram_draws_external_producers_types_and_handlers() -> None:
    """The Mermaid diagram links producers to types to handlers, by group."""
    text = Choreography("c", [_group("a", Asked, (Answered,))], external=(Asked,)).to_mermaid()
    assert text.splitlines() == [
        "flowchart LR",
        "  external((external))",
        '  t0(["loop.answered v1"])',
        '  t1(["loop.asked v1"])',
        '  subgraph g0["group a"]',
        '    g0h0["on_a"]',
        "  end",
        "  external --> t1",
        "  t1 --> g0h0",
        "  g0h0 -. publishes .-> t0",
    ]
