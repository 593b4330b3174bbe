"""A trip lifecycle hybrid for the tests: a chart whose ``booking`` state invokes a
provider saga, and whose ``confirmed`` transition publishes ``TripConfirmed`` to a
notifier group. Every saga effect, compensation and notification is recorded in a
:class:`Ledger` under its idempotency key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tripwright.bus import Event
from tripwright.engine import RetryPolicy
from tripwright.errors import FinalError
from tripwright.flows import ConsumerGroup, HandlerContext, Saga, SagaContext
from tripwright.flows.hybrid import Hybrid, publish
from tripwright.flows.statechart import Assign, Invoke, final, on, state, statechart

__all__ = ["Ledger", "TripConfirmed", "trip_hybrid"]

QUICK = RetryPolicy(max_attempts=2, initial_interval=0.1, jitter=False)


class TripConfirmed(Event):
    type_name = "trip.confirmed"
    trip_id: str
    flight: str


@dataclass
class Ledger:
    """What the providers and the notifier saw: (step, idempotency key) in call order."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    notified: list[dict[str, Any]] = field(default_factory=list)

    def steps(self) -> list[str]:
        return [step for step, _ in self.calls]


def provider_saga(ledger: Ledger) -> Saga:
    """Hold a flight and a room, wait for the fare's approval, then charge (the pivot);
    ``fail_at`` in the input makes that step fail for good."""
    saga = Saga("book_providers", default_retry=QUICK, compensation_retry=QUICK)

    def action(name: str) -> Any:
        async def act(ctx: SagaContext) -> str:
            if (ctx.input or {}).get("fail_at") == name:
                raise FinalError(f"{name}: no availability")
            ledger.calls.append((name, ctx.idempotency_key))
            return f"{name}:{ctx.input['trip_id']}"

        return act

    def undo(name: str) -> Any:
        async def compensate(ctx: SagaContext) -> None:
            ledger.calls.append((f"undo:{name}", ctx.idempotency_key))

        return compensate

    saga.step("hold_flight", action("hold_flight"), compensate=undo("hold_flight"))
    saga.step("hold_room", action("hold_room"), compensate=undo("hold_room"))
    saga.wait("approval", "fare.approved")
    saga.step("charge", action("charge"), pivot=True)
    return saga


def notifier_group(ledger: Ledger) -> ConsumerGroup:
    group = ConsumerGroup("notifier", retry=QUICK)

    @group.handler(TripConfirmed)
    async def notify(event: TripConfirmed, ctx: HandlerContext) -> None:
        ledger.notified.append(
            {"trip": event.trip_id, "flight": event.flight, **ctx.envelope.to_dict()}
        )

    return group


trip_chart = statechart(
    "trip",
    state("requested", on("book", "booking")),
    state(
        "booking",
        Invoke(
            id="book",
            type="saga",
            src="book_providers",
            namelist=("trip_id", "fail_at"),
            autoforward=True,
        ),
        on(
            "done.invoke.book",
            "confirmed",
            actions=(
                Assign("booked", expr="_event.data['results']"),
                publish(TripConfirmed, trip_id="trip_id", flight="booked['hold_flight']"),
            ),
        ),
        on("error.invoke.book", "failed", actions=Assign("failure", expr="_event.data")),
        on("cancel", "cancelled"),
        on("change", "booking"),  # re-enters booking: a new saga replaces the old one
    ),
    final("confirmed", donedata={"booked": "booked"}),
    final("failed", donedata={"failure": "failure"}),
    final("cancelled"),
    data={"trip_id": "T-1", "fail_at": None, "booked": None, "failure": None},
)


def trip_hybrid(ledger: Ledger) -> Hybrid:
    """The trip hybrid whose providers and notifier write to ``ledger``."""
    return Hybrid(
        trip_chart,
        sagas=[provider_saga(ledger)],
        groups=[notifier_group(ledger)],
        publishes=[TripConfirmed],
    )
