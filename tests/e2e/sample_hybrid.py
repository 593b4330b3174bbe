"""Hybrids for the CLI tests: the trip hybrid of the tests, and one with wiring errors."""

from __future__ import annotations

from tests.hybrid_flows import Ledger, TripConfirmed, notifier_group, provider_saga, trip_hybrid
from tripwright.bus import Event
from tripwright.flows.hybrid import Hybrid, publish
from tripwright.flows.statechart import Invoke, final, on, state, statechart

__all__ = ["miswired", "trip"]

trip = trip_hybrid(Ledger())


class TripCancelled(Event):
    type_name = "trip.cancelled"
    trip_id: str


class RefundIssued(Event):
    type_name = "refund.issued"
    trip_id: str


_chart = statechart(
    "miswired",
    state(
        "booking",
        Invoke(id="book", type="saga", src="book_hotels"),
        on("done.invoke.book", "done", actions=publish(TripConfirmed, trip_id="'T'")),
        on("cancel", "done", actions=publish(TripCancelled, trip_id="'T'")),
    ),
    final("done"),
)

miswired = Hybrid(
    _chart,
    sagas=[provider_saga(Ledger())],
    groups=[notifier_group(Ledger())],
    publishes=[TripConfirmed, RefundIssued],
)
