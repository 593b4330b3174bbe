"""What the stateful property tests share: a store per example, an event loop, crashes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine

from tests.conftest import _truncate
from tripwright.engine.store import Store, create_store, upgrade

T = TypeVar("T")
M = TypeVar("M", bound="StoreMachine")
#: Real seconds to wait for a crashed worker's in-flight store calls to end.
DEAD_IO_TIMEOUT = 5.0
#: Settings every stateful test starts from (examples and steps are set per test).
STATEFUL = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Crash(BaseException):
    """Stands for the worker process dying mid-step."""


@dataclass(frozen=True, slots=True)
class Backend:
    """How each example gets an empty, migrated store."""

    #: A migrated store URL for one example (SQLite: a new file).
    fresh_url: Callable[[], str]
    #: Empties the store before an example (PostgreSQL: truncates the tables).
    reset: Callable[[str], Awaitable[None]] | None = None


class StoreMachine(RuleBasedStateMachine):
    """A state machine owning an event loop (Hypothesis has no async rules: each rule
    body runs with ``loop.run_until_complete``) and an open store of its own."""

    backend: ClassVar[Backend]

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_ignore_crash_leftovers)
        try:
            url = self.backend.fresh_url()
            if self.backend.reset is not None:
                self._run(self.backend.reset(url))
            self.store: Store = create_store(url)
            self._run(self.store.open())
        except BaseException:
            self.loop.close()
            raise

    def _run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def _close(self) -> None:
        loop = self.loop
        try:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(self.store.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


async def bury_the_dead() -> None:
    """Let a dead worker's last I/O end: a commit it had sent lands now or never.

    Between rules nothing else is in flight, so every other task belongs to the dead
    worker. Without this, a checkpoint statement still executing on PostgreSQL could land
    between two reads of an invariant.
    """
    leftovers = asyncio.all_tasks() - {asyncio.current_task()}
    if leftovers:
        await asyncio.wait(leftovers, timeout=DEAD_IO_TIMEOUT)


def _ignore_crash_leftovers(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Drop the unretrieved errors a simulated crash leaves behind; report anything else."""
    error = context.get("exception")
    aborted_commit = (
        isinstance(error, RuntimeError)
        and bool(error.args)
        and isinstance(error.args[0], asyncio.CancelledError)
    )
    if not isinstance(error, Crash) and not aborted_commit:
        loop.default_exception_handler(context)


def on_backend(
    machine: type[M], kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> type[M]:
    """``machine`` bound to a store kind: fresh SQLite files, or the truncated test PG."""
    if kind == "sqlite":
        numbers = itertools.count()

        def fresh_url() -> str:
            url = f"sqlite:///{tmp_path / f'example-{next(numbers)}.db'}"
            upgrade(url)
            return url

        backend = Backend(fresh_url=fresh_url)
    else:
        url = str(request.getfixturevalue("pg_url"))
        backend = Backend(fresh_url=lambda: url, reset=_truncate)

    class Bound(machine):  # type: ignore[valid-type,misc]
        pass

    Bound.backend = backend
    return Bound
