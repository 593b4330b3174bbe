"""A choreography for the crash tests, loaded by worker processes as
``tests.integration.event_flows:booking``.

``billing`` handles each trip step and publishes a charge; ``audit`` handles both. Each
handler keeps the ids it handled in its mailbox state (committed with the handler), so a
test reads from the inboxes what was applied, and how often.
"""

from __future__ import annotations

import asyncio

from tripwright.bus import Event
from tripwright.flows.events import Choreography, ConsumerGroup, HandlerContext


class TripStep(Event):
    type_name = "trip.step"
    trip_id: str
    n: int


class Charged(Event):
    type_name = "payment.charged"
    trip_id: str
    n: int


billing = ConsumerGroup("billing")


@billing.handler(TripStep, publishes=(Charged,))
async def charge(event: TripStep, ctx: HandlerContext) -> None:
    await asyncio.sleep(0.001)  # a provider call: keeps a burst in flight long enough to kill
    ctx.state.setdefault("handled", []).append(ctx.event_id)
    ctx.publish(Charged(trip_id=event.trip_id, n=event.n))


audit = ConsumerGroup("audit")


@audit.handler(TripStep, Charged)
async def record(event: TripStep | Charged, ctx: HandlerContext) -> None:
    ctx.state.setdefault(event.type_name, []).append(ctx.event_id)


booking = Choreography("booking", [billing, audit], external=(TripStep,))
