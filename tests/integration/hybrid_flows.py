"""The hybrid the crash-resume test serves from real worker processes.

A trip machine whose ``booking`` state invokes the saga of
:mod:`tests.integration.saga_flows` (every effect and compensation lands in the provider
ledger under its idempotency key); ``confirmed`` publishes ``TripConfirmed``, which a
notifier group writes to the same ledger. Loaded by ``tripwright worker --flows
tests.integration.hybrid_flows:flows``.
"""

from __future__ import annotations

import asyncio
import os

from tests.integration.saga_flows import trip as booking_saga
from tripwright.bus import Event
from tripwright.demo.flow import LEDGER_ENV, EffectLedger
from tripwright.engine import RetryPolicy
from tripwright.flows import ConsumerGroup, HandlerContext
from tripwright.flows.hybrid import Hybrid, publish
from tripwright.flows.statechart import Assign, Invoke, final, on, state, statechart

__all__ = ["NOTIFY", "TripConfirmed", "flows", "lifecycle"]

#: The ledger step of a notification.
NOTIFY = "notified"


class TripConfirmed(Event):
    type_name = "crash.trip.confirmed"
    trip: str


lifecycle = statechart(
    "test.hybrid_crash",
    state(
        "booking",
        Invoke(id="book", type="saga", src=booking_saga.name, namelist=("trip", "fail_at")),
        on("done.invoke.book", "confirmed", actions=publish(TripConfirmed, trip="trip")),
        on("error.invoke.book", "failed", actions=Assign("undone", expr="_event.data")),
    ),
    final("confirmed"),
    final("failed", donedata={"undone": "undone['compensated']"}),
    data={"trip": None, "fail_at": None, "undone": None},
)

notifier = ConsumerGroup(
    "test.hybrid_notifier", retry=RetryPolicy(max_attempts=30, initial_interval=0.01)
)


@notifier.handler(TripConfirmed)
async def notify(event: TripConfirmed, ctx: HandlerContext) -> None:
    ledger = EffectLedger(os.environ[LEDGER_ENV])
    worker = os.environ.get("TRIPWRIGHT_WORKER_ID", str(os.getpid()))
    await asyncio.to_thread(ledger.apply, ctx.idempotency_key, event.trip, NOTIFY, worker)


flows = [Hybrid(lifecycle, sagas=[booking_saga], groups=[notifier], publishes=[TripConfirmed])]
