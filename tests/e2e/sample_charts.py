"""Statecharts in the typed Python API for the CLI tests (`tests.e2e.sample_charts:...`)."""

from __future__ import annotations

from tripwright.flows.statechart import (
    Assign,
    Cancel,
    Data,
    Log,
    Send,
    final,
    on,
    state,
    statechart,
)

#: The booking lifecycle of examples/booking.yaml and examples/booking.scxml.
booking = statechart(
    "booking",
    state("quoted", on("hold", "held", cond="seats > 0"), on("hold", "rejected")),
    state(
        "held",
        on("hold.expired", "expired"),
        on("pay", "paying"),
        on_entry=Send(event="hold.expired", id="hold-timer", delay=900),
        on_exit=Cancel(sendid="hold-timer"),
    ),
    state(
        "paying",
        on("payment.ok", "ticketing"),
        on("payment.failed", "held", cond="attempts < 3"),
        on("payment.failed", "rejected"),
        on_entry=Assign("attempts", expr="attempts + 1"),
    ),
    state(
        "ticketing",
        on("ticket.issued", "confirmed", actions=Log("ticketed", "_event.data")),
    ),
    final("confirmed"),
    final("expired"),
    final("rejected"),
    initial="quoted",
    data=[Data("seats", expr="2"), Data("attempts", expr="0")],
)

#: A chart with a dead end and an unknown target, for `flows validate`.
broken = statechart(
    "broken",
    state("start", on("go", "stuck"), on("jump", "nowhere")),
    state("stuck"),
    final("done"),
)

#: Both charts.
charts = [booking, broken]
