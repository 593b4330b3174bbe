"""A saga for worker subprocesses whose every effect and compensation lands in a ledger.

Loaded by ``tripwright worker --flows tests.integration.saga_flows:flows``. Every action
and every compensation applies its effect to the provider ledger of the demo
(:class:`tripwright.demo.flow.EffectLedger`, a SQLite file named by ``LEDGER_ENV``) under
its idempotency key, so a test can read from the outside what took effect, how often it
was called, and in which order effects first landed (the ledger's row order).

A run's input chooses its fate: ``{"fail_at": "charge"}`` makes that step fail for good
(before any effect), so the saga compensates; ``{"crash_in_undo": "room"}`` makes the
worker named by :data:`CRASH_WORKER_ENV` SIGKILL itself right after that compensation took
effect, before its checkpoint: a crash in the middle of a compensation.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Awaitable, Callable

from tripwright.demo.flow import FAILURE_RATE_ENV, LEDGER_ENV, EffectLedger
from tripwright.engine import RetryPolicy
from tripwright.errors import FinalError
from tripwright.flows import Saga, SagaContext

__all__ = ["CRASH_WORKER_ENV", "FORWARD", "PIVOT", "flows", "trip"]

CRASH_WORKER_ENV = "TRIPWRIGHT_CRASH_WORKER"
#: The saga's steps in order; ``ticket`` is the pivot.
FORWARD = ("flight", "room", "charge", "ticket", "notify")
PIVOT = "ticket"


class ProviderHiccup(Exception):
    """A transient provider failure: retried."""


def _worker() -> str:
    return os.environ.get("TRIPWRIGHT_WORKER_ID", str(os.getpid()))


async def _apply(ctx: SagaContext, step: str) -> None:
    await asyncio.sleep(random.uniform(0.002, 0.015))
    if random.random() < float(os.environ.get(FAILURE_RATE_ENV, "0.05")):
        raise ProviderHiccup(f"{step}: provider returned 503")
    ledger = EffectLedger(os.environ[LEDGER_ENV])
    await asyncio.to_thread(ledger.apply, ctx.idempotency_key, ctx.run_id, step, _worker())


def _action(name: str) -> Callable[[SagaContext], Awaitable[str]]:
    async def act(ctx: SagaContext) -> str:
        if (ctx.input or {}).get("fail_at") == name:
            raise FinalError(f"{name} refused for good")
        await _apply(ctx, name)
        return name

    return act


def _compensation(name: str) -> Callable[[SagaContext], Awaitable[None]]:
    async def undo(ctx: SagaContext) -> None:
        await _apply(ctx, f"undo:{name}")
        if (ctx.input or {}).get("crash_in_undo") == name and _worker() == os.environ.get(
            CRASH_WORKER_ENV
        ):
            os.kill(os.getpid(), signal.SIGKILL)  # the effect landed; the checkpoint did not

    return undo


trip = Saga(
    "test.saga_crash",
    default_retry=RetryPolicy(max_attempts=30, initial_interval=0.005, max_interval=0.05),
    compensation_retry=RetryPolicy(max_attempts=30, initial_interval=0.005, max_interval=0.05),
    forward_retry=RetryPolicy(max_attempts=30, initial_interval=0.005, max_interval=0.05),
)
for _name in FORWARD:
    trip.step(
        _name,
        _action(_name),
        compensate=None if _name in (PIVOT, "notify") else _compensation(_name),
        pivot=_name == PIVOT,
        timeout=10.0,
    )

flows = [trip]
