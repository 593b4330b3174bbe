"""Definitions the command-line tests load as ``tests.e2e.sample_flows:definitions``."""

from __future__ import annotations

from tripwright.engine import Flow, RetryPolicy, StepContext
from tripwright.flows import Saga, SagaContext
from tripwright.flows.saga import branch


async def _act(ctx: SagaContext) -> str:
    return ctx.step


async def _undo(ctx: SagaContext) -> None:
    return None


trip = Saga("trip")
trip.step("flight", _act, compensate=_undo)
trip.parallel("extras", branch("car", _act, compensate=_undo), branch("insurance", _act))
trip.step("ticket", _act, pivot=True)

risky = Saga("risky")
risky.step("hold", _act)
risky.step("ticket", _act, pivot=True)

held = Saga("held")
held.step("fare", _act, compensate=_undo, deadline=900, on_expiry="reacquire")
held.wait("payment", "paid", timeout=3600)
held.step("ticket", _act, final=True)

#: Whether the car rental refuses (``late``'s branch fails while it does).
car_refused = {"on": True}


async def _car(ctx: SagaContext) -> str:
    if car_refused["on"]:
        raise RuntimeError("no car available")
    return ctx.step


once = RetryPolicy(max_attempts=1)
late = Saga("late", default_retry=once, forward_retry=once)
late.step("ticket", _act, pivot=True)
late.parallel("extras", branch("car", _car), branch("insurance", _act))

ping = Flow("ping")


@ping.step
async def hello(ctx: StepContext) -> None:
    ctx.context["hello"] = True


definitions = [trip, risky, held, late, ping]
