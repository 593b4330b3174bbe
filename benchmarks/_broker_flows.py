"""The choreography of the broker pipeline benchmark, loaded by its worker processes as
``benchmarks._broker_flows:pipeline``.

One consumer group, ``ledger``, takes every ``bench.hop`` event and keeps the numbers it
handled in its mailbox state per subject (committed with the handler), so that the
benchmark reads back from the store what was applied, how often, and in which order.
"""

from __future__ import annotations

from tripwright.bus import Event
from tripwright.flows.events import Choreography, ConsumerGroup, HandlerContext


class Hop(Event):
    type_name = "bench.hop"
    n: int


ledger = ConsumerGroup("ledger")


@ledger.handler(Hop)
async def record(event: Hop, ctx: HandlerContext) -> None:
    ctx.state.setdefault("seen", []).append(event.n)


pipeline = Choreography("pipeline", [ledger], external=(Hop,))
