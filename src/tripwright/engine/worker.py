"""Workers claim due runs, execute them concurrently and keep their leases alive."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid

from tripwright.engine.clock import Clock, RealClock
from tripwright.engine.committer import GroupCommitter
from tripwright.engine.config import EngineConfig
from tripwright.engine.executor import ExecutorStats, RunExecutor
from tripwright.engine.records import RunRecord
from tripwright.engine.registry import FlowRegistry
from tripwright.engine.store.base import Store
from tripwright.errors import StoreClosedError, StoreError

__all__ = ["Worker"]

log = logging.getLogger("tripwright.worker")


class Worker:
    """Executes runs of the registered flows from a shared store.

    Use :meth:`run` in production (until ``stop`` is set, then a graceful shutdown that
    hands leases back), or :meth:`run_until_idle` in tests and simulations to process
    every run that is due now and return.
    """

    def __init__(
        self,
        store: Store,
        registry: FlowRegistry,
        *,
        clock: Clock | None = None,
        config: EngineConfig | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock or RealClock()
        self.config = config or EngineConfig()
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = ExecutorStats()
        self.committer = GroupCommitter(store, max_batch=self.config.max_batch)
        self._executor = RunExecutor(
            store=store,
            committer=self.committer,
            registry=registry,
            clock=self.clock,
            config=self.config,
            worker_id=self.id,
            stats=self.stats,
        )
        self._active: dict[str, asyncio.Task[None]] = {}
        #: The lease epoch each execution claimed its run with.
        self._epochs: dict[asyncio.Task[None], int] = {}
        self._wakeup: asyncio.Event | None = None
        self._crash: BaseException | None = None
        self._accepting = True
        self._claim_threshold = max(
            1, min(self.config.claim_batch, self.config.max_concurrency) // 4
        )

    # -- public -----------------------------------------------------------------------
    @property
    def active_runs(self) -> list[str]:
        """Ids of runs this worker is executing now."""
        return list(self._active)

    def notify(self) -> None:
        """Tell the worker that work may be due (a run was started or sent an event)."""
        if self._wakeup is not None:
            self._wakeup.set()

    async def run_until_idle(self) -> int:
        """Execute every due run (and what becomes due meanwhile) until none is left.

        Returns how many run executions finished. A run's retry that is due later is left
        for a later call; with a virtual clock, advance it and call again.
        """
        executions = 0
        while True:
            claimed = await self._fill()
            if not self._active:
                return executions
            if claimed and len(self._active) < self.config.max_concurrency:
                await asyncio.sleep(0)
                if not self._active:
                    continue
            done, _ = await asyncio.wait(
                list(self._active.values()), return_when=asyncio.FIRST_COMPLETED
            )
            executions += len(done)
            self._raise_crash()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Work until ``stop`` is set, then shut down gracefully."""
        stop = stop or asyncio.Event()
        self._wakeup = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name=f"heartbeat {self.id}")
        try:
            while not stop.is_set():
                self._raise_crash()
                try:
                    claimed = await self._fill()
                except StoreClosedError:
                    raise
                except StoreError as exc:
                    log.warning("claim failed, retrying: %s", exc)
                    claimed = 0
                    await self.clock.sleep(self.config.poll_interval)
                    continue
                if claimed and len(self._active) < self.config.max_concurrency:
                    continue
                await self._idle(stop)
        finally:
            try:
                await self.shutdown()  # heartbeats go on while in-flight steps finish
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop claiming, let in-flight steps finish for ``grace`` seconds, hand back leases."""
        self._accepting = False
        grace = self.config.grace if grace is None else grace
        if self._active:
            await asyncio.wait(list(self._active.values()), timeout=grace)
        leftover = list(self._active)
        for task in list(self._active.values()):
            task.cancel()
        if self._active:
            await asyncio.gather(*self._active.values(), return_exceptions=True)
        await self.committer.close()
        if leftover:
            with contextlib.suppress(StoreError):
                await self.store.release_runs(self.id, leftover)

    def abort(self) -> None:
        """Stop dead, as a crash would: no checkpoint, no release (tests, simulations)."""
        self._accepting = False
        self.committer.abort()
        for task in self._active.values():
            task.cancel()

    # -- internals --------------------------------------------------------------------
    async def _fill(self) -> int:
        if not self._accepting:
            return 0
        free = self.config.max_concurrency - len(self._active)
        # A claim is a write transaction: claim in batches, not one slot at a time, unless
        # the worker would otherwise sit idle.
        if free <= 0 or (self._active and free < self._claim_threshold):
            return 0
        runs = await self.store.claim_runs(
            self.id,
            self.registry.keys(),
            self.clock.now(),
            min(free, self.config.claim_batch),
            self.config.lease_ttl,
        )
        for run in runs:
            stale = self._active.get(run.id)
            if stale is not None:
                # Our own execution outlived its lease and the run came back to us: the old
                # one is fenced out already; stop it so only the new one runs.
                stale.cancel()
            task = asyncio.create_task(self._execute(run), name=f"run {run.id}")
            self._active[run.id] = task
            self._epochs[task] = run.lease_epoch
            # Untrack on completion, even for a task cancelled before it ever ran.
            task.add_done_callback(functools.partial(self._untrack, run.id))
        return len(runs)

    async def _execute(self, run: RunRecord) -> None:
        try:
            await self._executor.execute(run)
        except asyncio.CancelledError:
            raise
        except StoreError as exc:
            log.warning("run %s abandoned after a store error (lease will expire): %s", run.id, exc)
        except Exception:
            log.exception("run %s abandoned after an engine error", run.id)
        except BaseException as exc:  # a simulated crash: the whole worker dies
            self._crash = exc
            raise

    def _untrack(self, run_id: str, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved here; a crash is re-raised by _raise_crash
        self._epochs.pop(task, None)
        if self._active.get(run_id) is task:
            del self._active[run_id]
        if self._wakeup is not None:
            self._wakeup.set()

    def _raise_crash(self) -> None:
        if self._crash is not None:
            crash, self._crash = self._crash, None
            self.abort()
            raise crash

    async def _idle(self, stop: asyncio.Event) -> None:
        """Sleep until woken, stopped, a slot frees, or the next run is due."""
        assert self._wakeup is not None
        self._wakeup.clear()
        delay = self.config.poll_interval
        free = self.config.max_concurrency - len(self._active)
        if free >= self._claim_threshold or not self._active:
            with contextlib.suppress(StoreError):
                due = await self.store.next_due_at(self.registry.keys())
                if due is not None:
                    delay = max(0.0, min(delay, due - self.clock.now()))
        if delay <= 0:
            await asyncio.sleep(0)
            return
        waiters = [
            asyncio.create_task(self._wakeup.wait()),
            asyncio.create_task(stop.wait()),
            asyncio.create_task(self.clock.sleep(delay)),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.clock.sleep(self.config.heartbeat_interval)
            snapshot = {run_id: (task, self._epochs[task]) for run_id, task in self._active.items()}
            if not snapshot:
                continue
            try:
                held = await self.store.heartbeat(
                    self.id, list(snapshot), self.clock.now(), self.config.lease_ttl
                )
            except StoreError as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for run_id, (task, epoch) in snapshot.items():
                # Only the execution the heartbeat was about: meanwhile the run may have been
                # released and claimed again by this worker, under a new lease.
                if run_id in held or self._active.get(run_id) is not task:
                    continue
                if await self._let_go(run_id, epoch):
                    continue
                if self._active.get(run_id) is task:
                    log.info("lease of run %s lost; stopping it here", run_id)
                    self.stats.leases_lost += 1
                    task.cancel()

    async def _let_go(self, run_id: str, epoch: int) -> bool:
        """Whether a run the heartbeat no longer holds was let go by its execution here.

        An execution's last checkpoint (a wait, a retry's backoff, the end) releases the
        lease; until its task has finished, a heartbeat can find the run released. The
        lease is lost only if the run changed hands since the claim (its epoch moved on: a
        takeover, or an operator's pause or cancel).
        """
        try:
            current = await self.store.get_run(run_id)
        except StoreError:
            return False
        return current.lease_owner is None and current.lease_epoch == epoch
