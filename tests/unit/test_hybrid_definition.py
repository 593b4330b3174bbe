"""Hybrid definitions: their checks (the parts' own and the wiring) and their diagram."""

from __future__ import annotations

import pytest

from tests.e2e.sample_hybrid import miswired
from tests.hybrid_flows import Ledger, TripConfirmed, notifier_group, provider_saga, trip_hybrid
from tripwright.errors import DefinitionError
from tripwright.flows import Saga, SagaContext
from tripwright.flows.hybrid import Hybrid, child_run_id, publish
from tripwright.flows.statechart import Invoke, Send, final, on, state, statechart


def messages(hybrid: Hybrid) -> list[str]:
    return [str(p) for p in hybrid.validate()]


def test_the_trip_hybrid_is_sound() -> None:
    """The wired trip chart, saga and notifier have no problem."""
    assert messages(trip_hybrid(Ledger())) == []


def test_wiring_errors_are_reported() -> None:
    """An unknown saga, an undeclared event, a type nobody subscribes to, an unused saga
    and a declared type nobody sends are each reported."""
    assert messages(miswired) == [
        "error: miswired/booking: invoke 'book': no saga 'book_hotels' in the definition "
        "(sagas: book_providers)",
        "error: miswired/booking: sends event 'trip.cancelled', which the definition does "
        "not declare in publishes=",
        "error: miswired: the chart publishes 'refund.issued' but no group subscribes to it "
        "(add a group, or declare it in external=)",
        "warning: book_providers: no state of the chart invokes this saga",
        "warning: miswired: 'refund.issued' is declared but no send publishes it",
    ]


def test_external_types_need_no_subscriber_and_topics_must_match() -> None:
    """A type declared external needs no group; an event send on another topic is an
    error; autoforward to a saga without signals is an error."""

    async def hold(ctx: SagaContext) -> None:
        return None

    plain = Saga("plain")
    plain.step("hold", hold, readonly=True)
    chart = statechart(
        "t",
        state(
            "a",
            Invoke(id="p", type="saga", src="plain", autoforward=True),
            on("go", "b", actions=Send(event="trip.confirmed", type="event", target="other")),
        ),
        final("b"),
    )
    hybrid = Hybrid(chart, sagas=[plain], publishes=[TripConfirmed], external=[TripConfirmed])
    assert messages(hybrid) == [
        "error: t/a: invoke 'p': autoforward to saga 'plain', which waits for no signal",
        "error: t/a: sends 'trip.confirmed' to topic 'other'; its topic is 'trip'",
    ]


def test_the_parts_own_problems_are_prefixed_by_the_part() -> None:
    """A problem of the chart names the chart, one of a saga names the saga."""
    chart = statechart("t", state("a", on("go", "b")), state("b"), state("lost"))
    empty = Saga("empty")
    found = messages(Hybrid(chart, sagas=[empty]))
    assert "error: empty/empty: the saga has no steps" in found
    assert any(m.startswith("warning: t/lost:") for m in found), found


def test_parts_listed_twice_are_refused() -> None:
    """A hybrid lists each saga and group once."""
    ledger = Ledger()
    chart = statechart("t", state("a"))
    with pytest.raises(DefinitionError, match="lists sagas twice"):
        Hybrid(chart, sagas=[provider_saga(ledger), provider_saga(ledger)])
    with pytest.raises(DefinitionError, match="lists groups twice"):
        Hybrid(chart, groups=[notifier_group(ledger), notifier_group(ledger)])


def test_publish_builds_an_event_send() -> None:
    """publish() is a send of type event on the class's topic."""
    send = publish(TripConfirmed, namelist=("trip_id",), flight="'LHR'")
    assert (send.event, send.type, send.target, send.namelist, send.params[0].expr) == (
        "trip.confirmed",
        "event",
        "trip",
        ("trip_id",),
        "'LHR'",
    )


def test_child_run_ids_are_the_machine_s_id_and_the_invoke_id() -> None:
    """<run>.<invokeid>, ~n from the second use of the id, hashed down to 64 characters."""
    long = child_run_id("r" * 32, "booking." + "x" * 60)
    assert (child_run_id("trip-1", "book"), child_run_id("trip-1", "book", 2)) == (
        "trip-1.book",
        "trip-1.book~2",
    )
    assert len(long) == 64
    assert long == child_run_id("r" * 32, "booking." + "x" * 60)


def test_the_diagram_draws_states_sagas_events_and_groups() -> None:
    """One flowchart: the invoke and publish edges leave the booking state, the event
    type leads to the notifier's handler, the saga's pivot is marked."""
    drawing = trip_hybrid(Ledger()).to_mermaid()
    assert drawing.startswith("flowchart LR\n")
    for line in (
        '  subgraph sg0["saga book_providers"]',
        '    sg0s3["charge ⟂ pivot"]',
        '  ev0(["trip.confirmed v1"])',
        "  st1 -. invokes .-> sg0",
        "  st1 -. publishes .-> ev0",
        '  st1 -->|"done.invoke.book"| st2',
        "  ev0 --> gr0h0",
    ):
        assert line in drawing.splitlines(), line
