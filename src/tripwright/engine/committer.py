"""Group commit: checkpoints of many runs share one transaction.

A checkpoint is acknowledged only after the transaction holding it commits, so grouping
weakens no guarantee; it only divides the cost of a commit (the fsync) among the runs that
reached a checkpoint while the previous transaction was in flight. With a single run in
flight every checkpoint commits alone and at once: batching adds no latency.
"""

from __future__ import annotations

import asyncio
from collections import deque

from tripwright.engine.records import Checkpoint
from tripwright.engine.store.base import Store
from tripwright.errors import (
    ContextNotSerializableError,
    LeaseLostError,
    StoreClosedError,
    StoreDataError,
)

__all__ = ["GroupCommitter"]


class GroupCommitter:
    """Batches :class:`Checkpoint` writes into store transactions."""

    def __init__(self, store: Store, *, max_batch: int = 512, max_inflight: int | None = None):
        self._store = store
        self._max_batch = max_batch
        self._max_inflight = max_inflight or store.max_inflight_commits
        self._queue: deque[tuple[Checkpoint, asyncio.Future[None]]] = deque()
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Counters for observability: transactions and checkpoints committed.
        self.transactions = 0
        self.checkpoints = 0

    async def commit(self, checkpoint: Checkpoint) -> None:
        """Commit ``checkpoint`` durably; raise :class:`LeaseLostError` if fenced out."""
        if self._closed:
            raise StoreClosedError("committer is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._queue and self._inflight < self._max_inflight:
            # Nothing waiting and a slot free: commit inline, saving a task and a loop turn.
            self._inflight += 1
            await self._flush([(checkpoint, future)])
        else:
            self._queue.append((checkpoint, future))
            self._pump()
        await future

    def _pump(self) -> None:
        while self._queue and self._inflight < self._max_inflight:
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._flush(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self, batch: list[tuple[Checkpoint, asyncio.Future[None]]]) -> None:
        try:
            try:
                outcomes = await self._store.commit([cp for cp, _ in batch])
            except (StoreDataError, ContextNotSerializableError):
                if len(batch) == 1:
                    raise
                # One checkpoint holds a value the database refuses: commit them one by
                # one, so that only its own run hears of it.
                await self._one_by_one(batch)
                return
        except BaseException as exc:
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                    # The submitter may be gone (its run was cancelled): don't log as lost.
                    future.exception()
                else:
                    future.cancel()
            if not isinstance(exc, Exception):
                raise
        else:
            self.transactions += 1
            self.checkpoints += sum(outcomes)
            for (cp, future), ok in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(None)
                else:
                    future.set_exception(
                        LeaseLostError("lease lost before checkpoint", run_id=cp.run_id)
                    )
        finally:
            self._inflight -= 1
            if not self._closed:
                self._pump()

    async def _one_by_one(self, batch: list[tuple[Checkpoint, asyncio.Future[None]]]) -> None:
        for cp, future in batch:
            try:
                [ok] = await self._store.commit([cp])
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()
                continue
            self.transactions += 1
            if future.done():
                continue
            if ok:
                self.checkpoints += 1
                future.set_result(None)
            else:
                future.set_exception(
                    LeaseLostError("lease lost before checkpoint", run_id=cp.run_id)
                )

    async def close(self) -> None:
        """Finish in-flight batches; refuse new checkpoints."""
        self._closed = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._queue:
            _, future = self._queue.popleft()
            if not future.done():
                future.set_exception(StoreClosedError("committer closed before commit"))

    def abort(self) -> None:
        """Drop everything at once, as a crash would (tests and simulations)."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        while self._queue:
            _, future = self._queue.popleft()
            future.cancel()
