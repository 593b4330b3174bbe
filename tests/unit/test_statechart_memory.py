"""In-memory simulation on virtual time."""

from __future__ import annotations

from tripwright.flows.statechart import Log, after, final, on, state, statechart
from tripwright.flows.statechart.memory import MachineRunner, simulate

BOOKING = statechart(
    "booking",
    state("quoted", on("hold", "held")),
    state(
        "held",
        on("pay", "paid"),
        after("15m", "expired"),
        on_entry=Log(label="held", expr="_event.data"),
    ),
    final("paid"),
    final("expired", on_entry=Log(label="expired")),
)


def test_simulation_delivers_timed_events_in_order() -> None:
    """Events are delivered at their times; the run stops when the machine terminates."""
    result = simulate(BOOKING, [(60, "pay", None), (0, "hold", {"seats": 2})])
    assert (result.configuration, result.terminated, result.time) == (("paid",), True, 60.0)
    assert [(e.label, e.value) for e in result.log] == [("held", {"seats": 2})]


def test_simulation_fires_timers_when_no_event_comes() -> None:
    """A delayed send fires at its due time when nothing else happens first."""
    result = simulate(BOOKING, [(10, "hold", None)])
    assert (result.configuration, result.terminated, result.time) == (("expired",), True, 910.0)
    assert {k: v for k, v in result.to_json().items() if k in ("configuration", "terminated")} == {
        "configuration": ["expired"],
        "terminated": True,
    }


def test_simulation_stops_at_the_time_limit() -> None:
    """With a time limit before the timer, the run stops there, not terminated."""
    result = simulate(BOOKING, [(0, "hold", None)], max_time=300)
    assert (result.configuration, result.terminated, result.time) == (("held",), False, 300.0)


def test_simulation_stops_when_idle() -> None:
    """With no events and no timers, the run stops at once."""
    result = simulate(BOOKING)
    assert (result.configuration, result.terminated, result.time) == (("quoted",), False, 0.0)


def test_runner_timer_that_is_rescheduled_fires_once() -> None:
    """Re-entering a state re-arms its timer; only the latest one fires."""
    chart = statechart(
        "r",
        state("wait", after(10, "late"), on("poke", "wait")),
        final("late"),
    )
    r = MachineRunner(chart)
    r.start()
    r.advance(5)
    r.send("poke")
    r.advance(9)
    assert r.configuration == ("wait",)
    r.advance(1)
    assert r.configuration == ("late",)
    assert r.time == 15.0
