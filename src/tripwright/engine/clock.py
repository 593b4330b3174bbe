"""Clocks: the real one, and a virtual one that skips time for tests and simulations."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import TypeVar

from tripwright.errors import StepTimeoutError

__all__ = ["Clock", "RealClock", "VirtualClock"]

T = TypeVar("T")


class Clock(ABC):
    """Source of time for the engine: wall time in seconds since the epoch."""

    @abstractmethod
    def now(self) -> float:
        """The current time, seconds since the epoch."""

    @abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Wait for ``seconds`` of this clock's time."""

    async def sleep_until(self, when: float) -> None:
        """Wait until this clock reads ``when``."""
        await self.sleep(max(0.0, when - self.now()))

    @abstractmethod
    async def run_with_timeout(self, awaitable: Awaitable[T], seconds: float | None) -> T:
        """Await ``awaitable``; raise :class:`StepTimeoutError` after ``seconds``."""


class RealClock(Clock):
    """Wall-clock time; sleeps and timeouts use the event loop."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def run_with_timeout(self, awaitable: Awaitable[T], seconds: float | None) -> T:
        if seconds is None:
            return await awaitable
        try:
            async with asyncio.timeout(seconds):
                return await awaitable
        except TimeoutError as exc:
            raise StepTimeoutError(f"timed out after {seconds:g}s") from exc


class VirtualClock(Clock):
    """A clock whose time moves only when told to.

    Sleepers wait on virtual deadlines; :meth:`advance` moves time forward deadline by
    deadline, letting each woken task run before going on, so hours of durable timers
    pass in milliseconds and in a reproducible order.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._counter), future))
        await future

    async def run_with_timeout(self, awaitable: Awaitable[T], seconds: float | None) -> T:
        if seconds is None:
            return await awaitable
        work = asyncio.ensure_future(awaitable)
        timer = asyncio.ensure_future(self.sleep(seconds))
        try:
            await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The caller was cancelled (lost lease, crash, shutdown): so is the step.
            work.cancel()
            raise
        finally:
            timer.cancel()
        if work.done():
            return work.result()
        work.cancel()
        raise StepTimeoutError(f"timed out after {seconds:g}s")

    def next_deadline(self) -> float | None:
        """The earliest deadline a live sleeper waits for, if any."""
        self._drop_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper due on the way."""
        await self.advance_to(self._now + seconds)

    async def advance_to(self, when: float) -> None:
        """Move time forward to ``when``, waking sleepers in deadline order."""
        while True:
            self._drop_cancelled()
            if not self._sleepers or self._sleepers[0][0] > when:
                break
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
            await _settle()
        self._now = max(self._now, when)
        await _settle()

    async def advance_to_next(self) -> bool:
        """Jump to the next sleeper's deadline; False if nobody sleeps."""
        deadline = self.next_deadline()
        if deadline is None:
            return False
        await self.advance_to(deadline)
        return True

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)


async def _settle(rounds: int = 8) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)
