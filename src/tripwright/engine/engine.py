"""The engine facade: start runs, send them events, query them, cancel them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from tripwright.engine import codec
from tripwright.engine.children import cancel_change
from tripwright.engine.clock import Clock, RealClock
from tripwright.engine.config import EngineConfig
from tripwright.engine.flow import Flow
from tripwright.engine.records import (
    ACTIVE_STATUSES,
    WAITING_STATUSES,
    ControlChange,
    JournalEntry,
    JournalKind,
    NewRun,
    RunRecord,
    RunStatus,
)
from tripwright.engine.registry import FlowRegistry
from tripwright.engine.store.base import Store
from tripwright.engine.summary import RunSummary, summarize
from tripwright.engine.worker import Worker
from tripwright.errors import ConfigurationError, InvalidRunStateError, TripwrightError

__all__ = ["Engine", "new_run_id"]

_DONE = {"retry": "retried", "resolve": "resolved"}


def new_run_id() -> str:
    """A new run id: time-ordered, unique."""
    return uuid.uuid7().hex if hasattr(uuid, "uuid7") else _uuid7_hex()


def _uuid7_hex() -> str:
    import os
    import time

    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand & ((1 << 76) - 1))
    value = (value & ~(0xC << 60)) | (0x8 << 60)
    return f"{value:032x}"


class Engine:
    """Entry point of the Python API: one store, the known flows, a clock, a config.

    Explicit objects, no global state: create as many engines as you need (one per
    database, say)::

        engine = Engine(store, FlowRegistry([booking]))
        run = await engine.start("booking", {"trip": "T-1"})
        async with engine.running_worker():
            done = await engine.wait(run.id)
    """

    def __init__(
        self,
        store: Store,
        registry: FlowRegistry | Iterable[Flow],
        *,
        clock: Clock | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        self.store = store
        self.registry = registry if isinstance(registry, FlowRegistry) else FlowRegistry(registry)
        self.clock = clock or RealClock()
        self.config = config or EngineConfig()
        self._workers: list[Worker] = []

    # -- runs -------------------------------------------------------------------------
    async def start(
        self,
        flow: str | Flow,
        input: Any = None,
        *,
        context: dict[str, Any] | None = None,
        version: str | None = None,
        run_id: str | None = None,
        correlation_id: str | None = None,
        owner: str | None = None,
        idempotency_key: str | None = None,
    ) -> RunRecord:
        """Create a run of ``flow`` (newest version unless ``version``).

        With an ``idempotency_key`` already used by the same owner, the existing run is
        returned and nothing new is created.
        """
        [run] = await self.start_many(
            flow,
            [input],
            context=context,
            version=version,
            run_ids=[run_id] if run_id else None,
            correlation_id=correlation_id,
            owner=owner,
            idempotency_keys=[idempotency_key] if idempotency_key else None,
        )
        return run

    async def start_many(
        self,
        flow: str | Flow,
        inputs: Sequence[Any],
        *,
        context: dict[str, Any] | None = None,
        version: str | None = None,
        run_ids: Sequence[str] | None = None,
        correlation_id: str | None = None,
        owner: str | None = None,
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[RunRecord]:
        """Create one run per input in one transaction."""
        definition = self._resolve(flow, version)
        if run_ids is not None and len(run_ids) != len(inputs):
            raise ConfigurationError("run_ids must match inputs one to one")
        if idempotency_keys is not None and len(idempotency_keys) != len(inputs):
            raise ConfigurationError("idempotency_keys must match inputs one to one")
        for value, what in (
            (correlation_id, "correlation id"),
            (owner, "owner"),
            *((key, "idempotency key") for key in (idempotency_keys or ())),
            *((rid, "run id") for rid in (run_ids or ())),
        ):
            if value is not None:
                codec.check_name(value, what)
        if run_ids is not None and any(len(rid) > 64 for rid in run_ids):
            raise ConfigurationError("a run id is at most 64 characters")
        base_context = context or {}
        codec.dumps(base_context, what="run context")
        now = self.clock.now()
        new_runs = []
        for index, item in enumerate(inputs):
            codec.dumps(item, what="run input")
            run_id = run_ids[index] if run_ids is not None else new_run_id()
            new_runs.append(
                NewRun(
                    id=run_id,
                    flow_name=definition.name,
                    flow_version=definition.version,
                    definition_hash=definition.definition_hash,
                    step=definition.start_step,
                    input=item,
                    context=dict(base_context),
                    correlation_id=correlation_id or run_id,
                    owner=owner,
                    idempotency_key=idempotency_keys[index] if idempotency_keys else None,
                    created_at=now,
                )
            )
        created = await self.store.create_runs(new_runs)
        self._notify()
        return [record for record, _ in created]

    async def get(self, run_id: str) -> RunRecord:
        """The run now (:class:`RunNotFoundError` if there is none)."""
        return await self.store.get_run(run_id)

    async def describe(self, run_id: str) -> RunSummary:
        """What run control shows of a run: status, current step, the position its model
        describes (when its flow is registered here), context, what it waits for, and its
        next pending timer."""
        run = await self.store.get_run(run_id)
        events = await self.store.pending_events(run_id)
        definition = self._definition_of(run)
        return summarize(run, events, definition.position if definition else None)

    async def list_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        correlation_id: str | None = None,
        owner: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Runs by flow, status, correlation id and owner, newest first."""
        return await self.store.list_runs(
            flow=flow, status=status, correlation_id=correlation_id, owner=owner, limit=limit
        )

    async def send(
        self,
        run_id: str,
        name: str,
        payload: Any = None,
        *,
        delay: float | None = None,
        dedupe_key: str | None = None,
    ) -> int:
        """Queue event ``name`` for a run; it is applied once, in arrival order.

        The same ``dedupe_key`` sent twice to one run queues one event.
        """
        codec.check_name(name, "event name")
        if dedupe_key is not None:
            codec.check_name(dedupe_key, "dedupe key")
        encoded = codec.dumps(payload, what="event payload", run_id=run_id)
        now = self.clock.now()
        event_id = await self.store.send_event(
            run_id,
            name,
            encoded,
            now,
            visible_at=None if delay is None else now + delay,
            dedupe_key=dedupe_key,
        )
        self._notify()
        return event_id

    async def cancel(
        self, run_id: str, reason: str = "cancelled", *, clean_up: bool = True
    ) -> RunRecord:
        """Cancel an active or paused run; a worker executing it is fenced out.

        If the run's flow (as registered here) names an ``on_cancel`` step and
        ``clean_up`` is true, the run goes on at that step, which sees the cancel as
        ``ctx.failure`` (a saga compensates, then ends as cancelled); otherwise the run is
        cancelled at once.
        """
        now = self.clock.now()
        run = await self.store.get_run(run_id)
        definition = self._definition_of(run) if clean_up else None
        handler = definition.on_cancel if definition is not None else None
        if handler is None:
            return await self.store.cancel_run(run_id, now, reason)

        def decide(current: RunRecord) -> ControlChange:
            return cancel_change(current, reason, handler, now)

        cancelled = await self.store.control_run(run_id, now, decide)
        self._notify()
        return cancelled

    async def pause(self, run_id: str, reason: str = "paused") -> RunRecord:
        """Pause an active run: no worker takes it until :meth:`resume`. A step in flight
        finishes, but its checkpoint is refused; it runs again, same key, on resume."""

        def decide(run: RunRecord) -> ControlChange:
            if run.status not in ACTIVE_STATUSES:
                raise InvalidRunStateError(
                    f"cannot pause a {run.status.value} run", run_id=run.id, flow=run.flow_name
                )
            return ControlChange(
                status=RunStatus.PAUSED,
                step=run.step,
                state={**run.state, "paused_from": run.status.value},
                due_at=run.due_at,
                error=None,
                journal_kind=JournalKind.RUN_PAUSED,
                journal_data={"reason": reason, "from": run.status.value},
            )

        return await self.store.control_run(run_id, self.clock.now(), decide)

    async def resume(self, run_id: str) -> RunRecord:
        """Resume a paused run where it was."""

        def decide(run: RunRecord) -> ControlChange:
            if run.status is not RunStatus.PAUSED:
                raise InvalidRunStateError(
                    f"cannot resume a {run.status.value} run", run_id=run.id, flow=run.flow_name
                )
            state = dict(run.state)
            previous = RunStatus(state.pop("paused_from", RunStatus.RUNNING.value))
            # A waiting run re-checks its queue at once; others keep their due time (a
            # retry backoff still applies).
            due = now if previous in WAITING_STATUSES or run.due_at is None else run.due_at
            return ControlChange(
                status=previous,
                step=run.step,
                state=state,
                due_at=due,
                error=None,
                journal_kind=JournalKind.RUN_RESUMED,
                journal_data={"to": previous.value},
            )

        now = self.clock.now()
        run = await self.store.control_run(run_id, now, decide)
        self._notify()
        return run

    async def retry(self, run_id: str) -> RunRecord:
        """Run a failed run's failed step again, with a fresh set of attempts; a run
        parked for an operator (``needs_attention``) is sent the retry event its wait
        names (a saga's ``saga.retry``), and a worker takes it from there."""
        parked = await self.store.get_run(run_id)
        if parked.status is RunStatus.NEEDS_ATTENTION:
            return await self._operator(parked, "retry")

        def decide(run: RunRecord) -> ControlChange:
            if run.status is not RunStatus.FAILED or run.step is None:
                raise InvalidRunStateError(
                    f"only a failed run can be retried, not a {run.status.value} one",
                    run_id=run.id,
                    flow=run.flow_name,
                )
            # A fresh set of attempts; the event the failed step was given (``resume``) is
            # handed to it again, and a failure handler sees its ``failure`` again.
            state = {k: v for k, v in run.state.items() if k not in ("attempt", "wait")}
            return ControlChange(
                status=RunStatus.RUNNING,
                step=run.step,
                state=state,
                due_at=now,
                error=None,
                journal_kind=JournalKind.RUN_RETRIED,
                journal_data={"step": run.step, "previous_error": run.error},
            )

        now = self.clock.now()
        run = await self.store.control_run(run_id, now, decide)
        self._notify()
        return run

    async def resolve(self, run_id: str) -> RunRecord:
        """Tell a run parked for an operator (``needs_attention``) that what it was stuck
        on was handled by hand: it is sent the resolve event its wait names (a saga's
        ``saga.resolve``: the stuck step counts as done and the saga goes on)."""
        return await self._operator(await self.store.get_run(run_id), "resolve")

    async def _operator(self, run: RunRecord, action: Literal["retry", "resolve"]) -> RunRecord:
        """Send a parked run the event of an operator's ``action``. Asking twice before a
        worker took the first is asking once (the event is deduplicated)."""
        if run.status is not RunStatus.NEEDS_ATTENTION:
            raise InvalidRunStateError(
                f"only a run waiting for an operator (needs_attention) can be "
                f"{_DONE[action]}, not a {run.status.value} one",
                run_id=run.id,
                flow=run.flow_name,
            )
        operator = (run.state.get("wait") or {}).get("operator") or {}
        event = operator.get(action)
        if not event:
            raise InvalidRunStateError(
                f"the run waits for an operator but names no event to {action} it",
                run_id=run.id,
                flow=run.flow_name,
            )
        await self.send(run.id, event, dedupe_key=f"operator:{action}:{run.journal_seq}")
        return run

    async def journal(self, run_id: str) -> list[JournalEntry]:
        """The run's journal, in order."""
        return await self.store.journal(run_id)

    async def journal_by_correlation(self, correlation_id: str) -> list[JournalEntry]:
        """Journal entries of all runs sharing a correlation id."""
        return await self.store.journal_by_correlation(correlation_id)

    async def wait(self, run_id: str, *, timeout: float = 60.0, poll: float = 0.05) -> RunRecord:
        """Poll until the run is terminal (real time), or raise ``TimeoutError``."""
        async with asyncio.timeout(timeout):
            while True:
                run = await self.store.get_run(run_id)
                if run.is_terminal:
                    return run
                await asyncio.sleep(poll)

    # -- workers ----------------------------------------------------------------------
    def worker(self, *, worker_id: str | None = None, config: EngineConfig | None = None) -> Worker:
        """A worker on this engine's store, flows and clock (started events wake it)."""
        worker = Worker(
            self.store,
            self.registry,
            clock=self.clock,
            config=config or self.config,
            worker_id=worker_id,
        )
        self._workers.append(worker)
        return worker

    def running_worker(self, **kwargs: Any) -> _RunningWorker:
        """``async with engine.running_worker():`` runs a worker in the background."""
        return _RunningWorker(self.worker(**kwargs))

    def _resolve(self, flow: str | Flow, version: str | None) -> Flow:
        if isinstance(flow, Flow):
            if flow.name not in self.registry:
                self.registry.register(flow)
            return self.registry.get(flow.name, version or flow.version)
        return self.registry.get(flow, version)

    def _definition_of(self, run: RunRecord) -> Flow | None:
        """The run's own definition, if registered here (same name and version)."""
        if run.flow_name not in self.registry:
            return None
        try:
            return self.registry.get(run.flow_name, run.flow_version)
        except TripwrightError:
            return None

    def _notify(self) -> None:
        for worker in self._workers:
            worker.notify()


class _RunningWorker:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Worker:
        self._task = asyncio.create_task(self.worker.run(self._stop))
        return self.worker

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
