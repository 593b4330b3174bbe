"""Choreographies the command-line tests load as ``tests.e2e.sample_events:...``."""

from __future__ import annotations

from tripwright.bus import Event
from tripwright.engine import RetryPolicy
from tripwright.errors import FinalError
from tripwright.flows.events import Choreography, ConsumerGroup, HandlerContext


class TripConfirmed(Event):
    type_name = "trip.confirmed"
    trip_id: str


class PaymentCaptured(Event):
    type_name = "payment.captured"
    version = 2
    trip_id: str


class TicketIssued(Event):
    type_name = "ticket.issued"
    trip_id: str


billing = ConsumerGroup("billing", retry=RetryPolicy(max_attempts=1))


@billing.handler(TripConfirmed, publishes=(PaymentCaptured,))
async def capture(event: TripConfirmed, ctx: HandlerContext) -> None:
    if event.trip_id.startswith("bad"):
        raise FinalError("card declined")
    ctx.publish(PaymentCaptured(trip_id=event.trip_id))


ticketing = ConsumerGroup("ticketing")


@ticketing.handler(PaymentCaptured, publishes=(TicketIssued,))
async def ticket(event: PaymentCaptured, ctx: HandlerContext) -> None:
    ctx.publish(TicketIssued(trip_id=event.trip_id))


booking = Choreography("booking", [billing, ticketing], external=(TripConfirmed,))


class Ping(Event):
    type_name = "loop.ping"


class Pong(Event):
    type_name = "loop.pong"


pinger = ConsumerGroup("pinger")


@pinger.handler(Pong, publishes=(Ping,))
async def ping(event: Pong, ctx: HandlerContext) -> None:
    ctx.publish(Ping())


ponger = ConsumerGroup("ponger")


@ponger.handler(Ping, publishes=(Pong,))
async def pong(event: Ping, ctx: HandlerContext) -> None:
    ctx.publish(Pong())


class Orphan(Event):
    type_name = "orphan.waiting"


lonely = ConsumerGroup("lonely")


@lonely.handler(Orphan)
async def wait_forever(event: Orphan, ctx: HandlerContext) -> None:
    return None


looping = Choreography("looping", [pinger, ponger, lonely])
