"""Definitions the command-line tests load as ``tests.e2e.sample_flows:definitions``."""

from __future__ import annotations

from tripwright.engine import Flow, StepContext
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

ping = Flow("ping")


@ping.step
async def hello(ctx: StepContext) -> None:
    ctx.context["hello"] = True


definitions = [trip, risky, held, ping]
