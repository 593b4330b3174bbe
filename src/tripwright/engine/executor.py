"""Executes one leased run step by step, one checkpoint per step.

Resume needs no replay: the run's row holds the current step, the attempt number, the
JSON context and what the run waits for. A step that was interrupted (crash, lost lease)
simply runs again with the same idempotency key, which is derived from the run, the step
and how many times that step already completed in the run.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from tripwright.engine import codec
from tripwright.engine.clock import Clock
from tripwright.engine.committer import GroupCommitter
from tripwright.engine.config import EngineConfig
from tripwright.engine.flow import (
    Cancelled,
    Complete,
    Fail,
    Flow,
    Goto,
    Outcome,
    Sleep,
    StepContext,
    WaitEvent,
    journaled_payload,
)
from tripwright.engine.records import (
    WAITING_STATUSES,
    Checkpoint,
    EventRecord,
    JournalEntry,
    JournalKind,
    RunRecord,
    RunStatus,
)
from tripwright.engine.registry import FlowRegistry
from tripwright.engine.store.base import Store, wait_match
from tripwright.errors import (
    ConfigurationError,
    ContextNotSerializableError,
    DefinitionError,
    LeaseLostError,
    StoreClosedError,
    StoreDataError,
    StoreError,
)

__all__ = ["ExecutorStats", "RunExecutor", "idempotency_key"]

log = logging.getLogger("tripwright.engine")

#: ``wait_names`` value that no event name matches (a plain sleep).
_MATCH_NOTHING = "|"
_ALWAYS_FINAL = (DefinitionError, ContextNotSerializableError, ConfigurationError)
#: Queued events read at once when a run keeps receiving them in-process.
_PREFETCH = 32
#: Events a run may receive in a row without handing its lease back (fairness).
_MAX_IN_A_ROW = 256


def idempotency_key(run_id: str, step: str, visit: int) -> str:
    """The key handed to a step's action: stable across attempts and crashes."""
    return f"{run_id}:{step}:{visit}"


@dataclass(slots=True)
class ExecutorStats:
    """Counters of what a worker did."""

    steps_completed: int = 0
    attempts_failed: int = 0
    runs_completed: int = 0
    runs_failed: int = 0
    runs_waiting: int = 0
    leases_lost: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


class _Journal:
    """Builds the journal entries of one checkpoint with consecutive sequence numbers."""

    __slots__ = ("correlation_id", "entries", "run_id", "seq")

    def __init__(self, run: RunRecord) -> None:
        self.run_id = run.id
        self.correlation_id = run.correlation_id
        self.seq = run.journal_seq
        self.entries: list[JournalEntry] = []

    def add(self, kind: JournalKind, step: str | None, at: float, /, **data: Any) -> None:
        self.seq += 1
        self.entries.append(
            JournalEntry(self.run_id, self.seq, kind.value, step, at, data, self.correlation_id)
        )

    def take(self) -> list[JournalEntry]:
        entries, self.entries = self.entries, []
        return entries


class RunExecutor:
    """Runs leased runs to their next wait or end."""

    def __init__(
        self,
        *,
        store: Store,
        committer: GroupCommitter,
        registry: FlowRegistry,
        clock: Clock,
        config: EngineConfig,
        worker_id: str,
        stats: ExecutorStats,
    ) -> None:
        self._store = store
        self._committer = committer
        self._registry = registry
        self._clock = clock
        self._config = config
        self._worker_id = worker_id
        self.stats = stats

    async def execute(self, run: RunRecord) -> None:
        """Advance ``run`` until it waits, ends, schedules a retry or loses its lease."""
        flow = self._registry.get(run.flow_name, run.flow_version)
        state: dict[str, Any] = dict(run.state)
        state.setdefault("visits", {})
        journal = _Journal(run)
        context_json = codec.dumps(run.context)
        step = run.step
        event: EventRecord | None = None
        timed_out = False
        # Events already queued for this run, read ahead (see _queued_event).
        ahead = _ReadAhead()
        in_a_row = 0
        # A batching step's checkpoint held back while the run receives the next queued
        # event in-process (see StepSpec.batch), and the run as it was before it.
        held: Checkpoint | None = None
        held_before = _Before(step, context_json, "")

        if (
            run.definition_hash != flow.definition_hash
            and state.get("hash") != flow.definition_hash
        ):
            journal.add(
                JournalKind.NOTE,
                step,
                self._clock.now(),
                message="definition changed since the run started",
                started_with=run.definition_hash,
                running_with=flow.definition_hash,
            )
            state["hash"] = flow.definition_hash

        if run.status in WAITING_STATUSES:
            wait = state.get("wait") or {}
            now = self._clock.now()
            if wait.get("kind") == "event":
                event = await self._first_event(run.id, wait.get("names"), ahead, now)
            deadline = wait.get("deadline")
            if event is None and (deadline is None or now < deadline):
                await self._rewait(run, flow, state, context_json, journal)
                return
            timed_out = event is None and wait.get("kind") == "event"
            step = wait["then"]
            state.pop("wait", None)
            state["resume"] = {"event_id": event.id if event else None, "timed_out": timed_out}
            if event is not None:
                kind = (
                    JournalKind.TIMER_FIRED if event.kind == "timer" else JournalKind.EVENT_RECEIVED
                )
                journal.add(
                    kind,
                    step,
                    now,
                    event=event.name,
                    event_id=event.id,
                    timer=event.timer_name,
                    payload=journaled_payload(flow, event),
                )
            elif timed_out:
                journal.add(JournalKind.WAIT_TIMED_OUT, step, now, names=wait.get("names"))
        elif "resume" in state:
            resume = state["resume"]
            if resume.get("event_id") is not None:
                event = await self._store.get_event(resume["event_id"])
            timed_out = bool(resume.get("timed_out"))

        assert step is not None
        lease_epoch = run.lease_epoch
        # While the run continues in this process its due time stays what it was when
        # claimed (already due, so a takeover after a crash is immediate); keeping indexed
        # columns unchanged lets PostgreSQL apply step checkpoints as HOT updates.
        due_anchor = run.due_at if run.due_at is not None else self._clock.now()
        state_json: str | None = None  # ``state`` as the last committed checkpoint wrote it
        while True:
            if not flow.has_step(step):
                await self._fail_outright(
                    run,
                    step,
                    state,
                    context_json,
                    journal,
                    lease_epoch,
                    {
                        "type": "DefinitionError",
                        "message": f"step {step!r} is not in {flow.key} as deployed "
                        f"(definition {flow.definition_hash[:12]})",
                    },
                )
                return
            spec = flow.get_step(step)
            # What the run was before this step, to fall back to if the store refuses it
            # (after a committed step: the state that checkpoint wrote).
            before = _Before(
                step, context_json, state_json if state_json is not None else codec.dumps(state)
            )
            before_seq = journal.seq
            attempt = int(state.get("attempt", 1))
            visit = int(state["visits"].get(step, 0))
            ctx = StepContext(
                run_id=run.id,
                flow=flow,
                step=step,
                attempt=attempt,
                idempotency_key=idempotency_key(run.id, step, visit),
                correlation_id=run.correlation_id,
                owner=run.owner,
                context=json.loads(context_json),
                input=run.input,
                clock=self._clock,
                event=event,
                timed_out=timed_out,
                failure=state.get("failure"),
                queued=tuple(ahead.events) if ahead.names == () else (),
            )
            started = self._clock.now()
            try:
                outcome = await self._clock.run_with_timeout(spec.fn(ctx), spec.timeout)
                outcome = _check_outcome(flow, step, outcome)
                new_context = codec.dumps(ctx.context, what="run context", run_id=run.id)
                final = _encode_final(outcome, run.id)
            except Exception as exc:
                checkpoint, go_on = self._failed(
                    run,
                    flow,
                    step,
                    state,
                    context_json,
                    journal,
                    exc,
                    attempt,
                    started,
                    event,
                    lease_epoch,
                )
                if held is not None:  # the batch's earlier steps commit with the failure
                    checkpoint, before, held = _joined(held, checkpoint), held_before, None
                if not await self._commit(checkpoint, journal, before):
                    return
                if not go_on:
                    return
                assert checkpoint.step is not None
                step = checkpoint.step
                event = None  # the failed step's event was consumed with its failure
                timed_out = False
                state_json = checkpoint.state
                continue

            now = self._clock.now()
            journal.add(
                JournalKind.STEP_STARTED,
                step,
                started,
                attempt=attempt,
                idempotency_key=ctx.idempotency_key,
            )
            effects = ctx.effects
            for name in effects.cancelled_timers:
                journal.add(JournalKind.TIMER_CANCELLED, step, now, timer=name)
            for timer in effects.timers:
                journal.add(
                    JournalKind.TIMER_SET,
                    step,
                    now,
                    timer=timer.timer_name,
                    event=timer.name,
                    fires_at=timer.visible_at,
                )
            for message in effects.outbox:
                journal.add(
                    JournalKind.EVENT_SENT,
                    step,
                    now,
                    event_id=message.event_id,
                    topic=message.topic,
                    type=message.type,
                    subject=message.subject,
                )
            for child in effects.children:
                journal.add(
                    JournalKind.CHILD_STARTED,
                    step,
                    now,
                    child=child.id,
                    flow=child.flow_name,
                    version=child.flow_version,
                )
            for cancel in effects.cancels:
                journal.add(
                    JournalKind.CHILD_CANCELLED,
                    step,
                    now,
                    child=cancel.run_id,
                    reason=cancel.reason,
                )
            for kind, data in effects.records:
                journal.add(kind, step, now, **data)
            journal.add(
                JournalKind.STEP_COMPLETED,
                step,
                now,
                attempt=attempt,
                duration=round(now - started, 6),
                outcome=_describe(outcome),
            )
            state["visits"][step] = visit + 1
            state.pop("attempt", None)
            state.pop("resume", None)
            state.pop("failure", None)
            checkpoint = Checkpoint(
                run_id=run.id,
                lease_owner=self._worker_id,
                lease_epoch=lease_epoch,
                status=RunStatus.RUNNING,
                step=step,
                state="",
                context=new_context,
                now=now,
                lease_expires_at=now + self._config.lease_ttl,
                due_at=due_anchor,
                outbox=effects.outbox,
                timers=effects.timers,
                cancelled_timers=effects.cancelled_timers,
                consumed_events=[
                    *([event.id] if event is not None else []),
                    *(e.id for e in effects.received),
                ],
                children=effects.children,
                messages=effects.messages,
                cancels=effects.cancels,
                dead_letters=effects.dead_letters,
            )
            self.stats.steps_completed += 1
            if effects.received:  # received in the step: no longer ahead
                del ahead.events[: len(effects.received)]
                in_a_row += len(effects.received)
            follow: EventRecord | None = None
            wait = (
                outcome
                if isinstance(outcome, WaitEvent)
                and not outcome.attention
                and not effects.timers
                and not effects.cancelled_timers
                and in_a_row < _MAX_IN_A_ROW
                else None
            )
            if wait is not None:
                consumed = checkpoint.consumed_events
                if held is not None:  # held back, so still pending in the store
                    consumed = [*held.consumed_events, *consumed]
                follow = await self._queued_event(run.id, wait, consumed, ahead, now)
            next_step: str | None
            try:
                if follow is not None and wait is not None:
                    in_a_row += 1
                    next_step = _receive_at_once(follow, wait, flow, step, checkpoint, state)
                    journal.add(
                        JournalKind.EVENT_RECEIVED,
                        next_step,
                        now,
                        event=follow.name,
                        event_id=follow.id,
                        timer=None,
                        payload=journaled_payload(flow, follow),
                    )
                else:
                    next_step = self._route(
                        flow, step, outcome, final, checkpoint, state, journal, now
                    )
                checkpoint.state = codec.dumps(state)
            except (ContextNotSerializableError, DefinitionError) as exc:
                # Nothing a step produced should get here (outcomes are checked inside the
                # step); if it does, fail the run as it was rather than retry it forever.
                journal.take()
                journal.seq = before_seq
                if held is not None and not await self._commit(held, journal, held_before):
                    return
                await self._fail_outright(
                    run,
                    before.step,
                    codec.loads(before.state),
                    before.context,
                    journal,
                    lease_epoch,
                    {"type": type(exc).__name__, "message": codec.safe_text(exc)},
                )
                return
            checkpoint.journal = journal.take()
            if held is not None:
                checkpoint, before, held = _joined(held, checkpoint), held_before, None
            if (
                follow is not None
                and spec.batch > 1
                and len(checkpoint.consumed_events) < spec.batch
            ):
                held, held_before = checkpoint, before
            elif not await self._commit(checkpoint, journal, before):
                return
            context_json = new_context
            state_json = checkpoint.state
            if next_step is None:
                return
            step = next_step
            event = follow
            timed_out = False

    async def _first_event(
        self, run_id: str, names: list[str] | None, ahead: _ReadAhead, now: float
    ) -> EventRecord | None:
        """The event a claimed waiting run receives (an event or a fired timer, oldest
        first); the external events queued behind it are read in the same query, ahead
        of the waits to come (see :meth:`_queued_event`)."""
        found = await self._store.next_events(run_id, names, now, _PREFETCH, timers=True)
        if not found:
            return None
        # In-process receipt takes external events only; a timer is received on a claim.
        ahead.fill(tuple(names or ()), [e for e in found[1:] if e.kind == "event"], found)
        return found[0]

    async def _queued_event(
        self,
        run_id: str,
        wait: WaitEvent,
        consumed: list[int],
        ahead: _ReadAhead,
        now: float,
    ) -> EventRecord | None:
        """An event already queued for a run about to wait for it: the run receives it at
        once, in-process, instead of handing its lease back and being claimed again.

        Read ahead in batches, for the names of the wait (a wait for other names reads
        again); ``consumed`` (by the checkpoint being written) are skipped. The
        events stay pending in the store until a checkpoint consumes them, and nobody else
        can consume them while this worker holds the lease. A batch that came back short
        held every event then queued: once it is used up the run waits without asking the
        store again (an event queued since makes the waiting run due at once, in the same
        commit, so it is received on the next claim).
        """
        names = tuple(wait.names)
        if ahead.names != names:
            ahead.fill(names, [], None)  # read for other names: maybe not in queue order
        if ahead.events:
            return ahead.events.pop(0)
        if ahead.complete:
            return None
        read = await self._store.next_events(run_id, names or None, now, _PREFETCH)
        batch = [e for e in read if e.id not in consumed]
        ahead.fill(names, batch[1:], read)
        return batch[0] if batch else None

    # -- outcomes ---------------------------------------------------------------------
    def _route(
        self,
        flow: Flow,
        step: str,
        outcome: Outcome | None,
        final: str | None,
        cp: Checkpoint,
        state: dict[str, Any],
        journal: _Journal,
        now: float,
    ) -> str | None:
        """Fill ``cp`` for ``outcome``; return the step to run next in-process, if any."""
        if outcome is None:
            following = flow.next_after(step)
            outcome = Goto(following) if following else Complete(None)
        if isinstance(outcome, Goto):
            cp.step = outcome.step
            return outcome.step
        cp.release = True
        cp.lease_expires_at = None
        if isinstance(outcome, Complete):
            cp.status = RunStatus.COMPLETED
            cp.due_at = None
            cp.result = final
            journal.add(JournalKind.RUN_COMPLETED, step, now)
            self.stats.runs_completed += 1
            return None
        if isinstance(outcome, Cancelled):
            cp.status = RunStatus.CANCELLED
            cp.due_at = None
            cp.error = final
            journal.add(JournalKind.RUN_CANCELLED, step, now, reason=outcome.reason)
            return None
        if isinstance(outcome, Fail):
            cp.status = RunStatus.FAILED
            cp.due_at = None
            cp.error = final
            journal.add(JournalKind.RUN_FAILED, step, now, reason=outcome.reason)
            self.stats.runs_failed += 1
            return None
        then = outcome.then or flow.next_after(step)
        if then is None:
            raise DefinitionError(  # checked by _check_outcome; kept for type narrowing
                "a wait at the last step needs then=", flow=flow.name, step=step
            )
        cp.status = (
            RunStatus.NEEDS_ATTENTION
            if isinstance(outcome, WaitEvent) and outcome.attention
            else RunStatus.WAITING
        )
        self.stats.runs_waiting += 1
        if isinstance(outcome, Sleep):
            until = outcome.until if outcome.until is not None else now + (outcome.seconds or 0.0)
            state["wait"] = {"kind": "sleep", "names": None, "deadline": until, "then": then}
            cp.wait_names = _MATCH_NOTHING
            cp.wait_deadline = until
            cp.due_at = until
            journal.add(JournalKind.WAIT_STARTED, step, now, until=until, then=then)
        else:
            deadline = None if outcome.timeout is None else now + outcome.timeout
            names = list(outcome.names) or None
            state["wait"] = {"kind": "event", "names": names, "deadline": deadline, "then": then}
            if isinstance(outcome, WaitEvent) and outcome.attention:
                # What run control sends for an operator's retry or resolve.
                state["wait"]["operator"] = {"retry": outcome.retry, "resolve": outcome.resolve}
            cp.wait_names = wait_match(names)
            cp.wait_deadline = deadline
            # Timers set by this very step may be what it waits for; the store adds the
            # events already queued.
            due = [t.visible_at for t in cp.timers if names is None or t.name in names]
            if deadline is not None:
                due.append(deadline)
            cp.due_at = min(due) if due else None
            journal.add(
                JournalKind.WAIT_STARTED, step, now, events=names, deadline=deadline, then=then
            )
        return None

    def _failed(
        self,
        run: RunRecord,
        flow: Flow,
        step: str,
        state: dict[str, Any],
        context_json: str,
        journal: _Journal,
        exc: Exception,
        attempt: int,
        started: float,
        event: EventRecord | None,
        lease_epoch: int,
    ) -> tuple[Checkpoint, bool]:
        """The checkpoint after a failed attempt, and whether to continue in-process."""
        now = self._clock.now()
        spec = flow.get_step(step)
        error = {"type": type(exc).__name__, "message": codec.safe_text(exc)}
        cp = Checkpoint(
            run_id=run.id,
            lease_owner=self._worker_id,
            lease_epoch=lease_epoch,
            status=RunStatus.RUNNING,
            step=step,
            state="",
            context=context_json,
            now=now,
            lease_expires_at=None,
            release=True,
        )
        if not isinstance(exc, _ALWAYS_FINAL) and spec.retry.should_retry(exc, attempt):
            delay = spec.retry.delay(attempt)
            journal.add(
                JournalKind.ATTEMPT_FAILED,
                step,
                now,
                attempt=attempt,
                error=error,
                retry_in=round(delay, 6),
                started=started,
            )
            self.stats.attempts_failed += 1
            state["attempt"] = attempt + 1
            cp.due_at = now + delay
            cp.state = codec.dumps(state)
            cp.journal = journal.take()
            return cp, False
        journal.add(
            JournalKind.STEP_FAILED, step, now, attempts=attempt, error=error, started=started
        )
        state.pop("attempt", None)
        if spec.on_failure is not None:
            state.pop("resume", None)
            state["failure"] = {"step": step, "error": error, "attempts": attempt}
            cp.step = spec.on_failure
            cp.release = False
            cp.lease_expires_at = now + self._config.lease_ttl
            cp.due_at = now
            if event is not None:
                cp.consumed_events = [event.id]
            cp.state = codec.dumps(state)
            cp.journal = journal.take()
            return cp, True
        journal.add(JournalKind.RUN_FAILED, step, now, error=error)
        cp.status = RunStatus.FAILED
        cp.error = codec.dumps({**error, "step": step, "attempts": attempt})
        cp.due_at = None
        # The event the step was given stays queued (and named in the state): a retry of
        # the run hands it to the step again.
        cp.state = codec.dumps(state)
        cp.journal = journal.take()
        self.stats.runs_failed += 1
        return cp, False

    async def _rewait(
        self,
        run: RunRecord,
        flow: Flow,
        state: dict[str, Any],
        context_json: str,
        journal: _Journal,
    ) -> None:
        """Woken with nothing to deliver (the event was taken, or a race): wait again."""
        wait = state.get("wait") or {}
        names = wait.get("names")
        cp = Checkpoint(
            run_id=run.id,
            lease_owner=self._worker_id,
            lease_epoch=run.lease_epoch,
            status=run.status if run.status in WAITING_STATUSES else RunStatus.WAITING,
            step=run.step,
            state=codec.dumps(state),
            context=context_json,
            now=self._clock.now(),
            lease_expires_at=None,
            due_at=wait.get("deadline"),
            wait_names=_MATCH_NOTHING if wait.get("kind") == "sleep" else wait_match(names),
            wait_deadline=wait.get("deadline"),
            release=True,
            journal=journal.take(),
        )
        await self._commit(cp, journal, _Before(run.step, context_json, cp.state))

    async def _commit(self, cp: Checkpoint, journal: _Journal, before: _Before) -> bool:
        """Commit ``cp``; True if the run goes on with it, False if execution stops here
        (the lease was lost, or the store refused the checkpoint and the run was failed).

        A transient store error is retried. Because a commit can succeed and still report
        an error (the connection died before the answer), each retry first reads the run:
        if its journal already holds this checkpoint under our lease epoch, it committed.
        A checkpoint the store refuses is replaced by one that fails the run, as it was
        before the step (``before``), with the store's reason.
        """
        delays = (0.05, 0.2, 0.5, 1.0, 2.0)
        for attempt in range(len(delays) + 1):
            try:
                await self._committer.commit(cp)
            except LeaseLostError:
                self.stats.leases_lost += 1
                log.info("lease lost; run %s left to its new owner", cp.run_id)
                return False
            except StoreClosedError:
                raise
            except (StoreDataError, ContextNotSerializableError) as exc:
                if cp.rejection:
                    raise
                log.warning("run %s: the store refused its checkpoint: %s", cp.run_id, exc)
                self.stats.runs_failed += 1
                await self._commit(_rejected(cp, exc, before, journal), journal, before)
                return False
            except StoreError:
                if attempt == len(delays):
                    raise
                await self._clock.sleep(delays[attempt])
                try:
                    current = await self._store.get_run(cp.run_id)
                except StoreError:
                    continue
                if current.lease_epoch != cp.lease_epoch:
                    self.stats.leases_lost += 1
                    return False
                last = cp.journal[-1].seq if cp.journal else None
                if last is not None and current.journal_seq >= last:
                    break  # it had committed; only the answer was lost
                continue
            break
        self.stats.by_status[cp.status.value] = self.stats.by_status.get(cp.status.value, 0) + 1
        return True

    async def _fail_outright(
        self,
        run: RunRecord,
        step: str | None,
        state: dict[str, Any],
        context_json: str,
        journal: _Journal,
        lease_epoch: int,
        error: dict[str, Any],
    ) -> None:
        """Fail the run at once, outside any step (the engine cannot go on with it)."""
        now = self._clock.now()
        journal.add(JournalKind.RUN_FAILED, step, now, error=error)
        cp = Checkpoint(
            run_id=run.id,
            lease_owner=self._worker_id,
            lease_epoch=lease_epoch,
            status=RunStatus.FAILED,
            step=step,
            state=codec.dumps(state),
            context=context_json,
            now=now,
            lease_expires_at=None,
            release=True,
            error=codec.dumps(error),
            journal=journal.take(),
        )
        self.stats.runs_failed += 1
        await self._commit(cp, journal, _Before(step, context_json, cp.state))


@dataclass(slots=True)
class _ReadAhead:
    """A run's queued events read ahead of its waits, in queue order."""

    events: list[EventRecord] = field(default_factory=list)
    #: The wait names they were read for (``()``: any).
    names: tuple[str, ...] | None = None
    #: Whether the read held every event then queued for those names.
    complete: bool = False

    def fill(
        self, names: tuple[str, ...], events: list[EventRecord], read: list[EventRecord] | None
    ) -> None:
        """Keep ``events`` (from ``read``, a query for ``names``; None: nothing read)."""
        self.names = names
        self.events = events
        self.complete = read is not None and len(read) < _PREFETCH


@dataclass(frozen=True, slots=True)
class _Before:
    """A run as it was before a step: what a refused checkpoint falls back to."""

    step: str | None
    context: str
    state: str


def _rejected(cp: Checkpoint, exc: Exception, before: _Before, journal: _Journal) -> Checkpoint:
    """A checkpoint failing the run, as it was before the step, in place of one the store
    refused; its journal entry takes the refused entries' place in the sequence."""
    error = {
        "type": "StoreDataError",
        "message": codec.safe_text(exc, 500),
        "step": before.step,
    }
    seq = cp.journal[0].seq if cp.journal else journal.seq + 1
    journal.seq = seq
    entry = JournalEntry(
        cp.run_id,
        seq,
        JournalKind.RUN_FAILED.value,
        before.step,
        cp.now,
        {"error": error},
        journal.correlation_id,
    )
    return Checkpoint(
        run_id=cp.run_id,
        lease_owner=cp.lease_owner,
        lease_epoch=cp.lease_epoch,
        status=RunStatus.FAILED,
        step=before.step,
        state=before.state,
        context=before.context,
        now=cp.now,
        lease_expires_at=None,
        release=True,
        error=codec.dumps(error),
        journal=[entry],
        rejection=True,
    )


def _joined(first: Checkpoint, then: Checkpoint) -> Checkpoint:
    """``then``, also writing what ``first`` (the run's checkpoint just before it, held
    back) wrote: two consecutive checkpoints of a run as one. A held checkpoint sets and
    cancels no timers (a step that does is not followed by an in-process receipt)."""
    then.journal = [*first.journal, *then.journal]
    then.outbox = [*first.outbox, *then.outbox]
    then.consumed_events = [*first.consumed_events, *then.consumed_events]
    then.dead_letters = [*first.dead_letters, *then.dead_letters]
    then.children = [*first.children, *then.children]
    then.messages = [*first.messages, *then.messages]
    then.cancels = [*first.cancels, *then.cancels]
    return then


def _receive_at_once(
    event: EventRecord,
    wait: WaitEvent,
    flow: Flow,
    step: str,
    cp: Checkpoint,
    state: dict[str, Any],
) -> str:
    """Fill ``cp`` for a wait that receives a queued event at once; the step to run next.

    The run stays running under its lease; the event is named in the state, so a crash
    before the next checkpoint resumes with the same event (as a claimed wait would).
    """
    then = wait.then or flow.next_after(step)
    if then is None:
        raise DefinitionError("a wait at the last step needs then=", flow=flow.name, step=step)
    cp.step = then
    state["resume"] = {"event_id": event.id, "timed_out": False}
    return then


def _encode_final(outcome: Outcome | None, run_id: str) -> str | None:
    """Encode a Complete result or a Fail reason now, inside the step: a value that cannot
    be stored fails the step like any other error."""
    if isinstance(outcome, Complete):
        return codec.dumps(outcome.result, what="run result", run_id=run_id)
    if isinstance(outcome, Fail):
        return codec.dumps(
            {"type": "Fail", "message": outcome.reason, "details": outcome.details},
            what="failure details",
            run_id=run_id,
        )
    if isinstance(outcome, Cancelled):
        return codec.dumps(
            {"type": "cancelled", "message": outcome.reason}, what="cancel reason", run_id=run_id
        )
    return None


def _check_outcome(flow: Flow, step: str, outcome: object) -> Outcome | None:
    if outcome is None:
        return None
    if not isinstance(outcome, Goto | Complete | Fail | Cancelled | Sleep | WaitEvent):
        raise DefinitionError(
            f"step returned {type(outcome).__name__}; expected Goto, Complete, Fail, Sleep, "
            "WaitEvent or None",
            flow=flow.name,
            step=step,
        )
    if isinstance(outcome, Goto) and not flow.has_step(outcome.step):
        raise DefinitionError(
            f"Goto names unknown step {outcome.step!r}", flow=flow.name, step=step
        )
    if isinstance(outcome, Sleep):
        for value in (outcome.seconds, outcome.until):
            if value is not None and not _finite_time(value):
                raise DefinitionError(
                    f"Sleep needs a finite, non-negative time, not {value!r}",
                    flow=flow.name,
                    step=step,
                )
    if isinstance(outcome, WaitEvent):
        if outcome.timeout is not None and not _finite_time(outcome.timeout):
            raise DefinitionError(
                f"WaitEvent timeout must be finite and >= 0, not {outcome.timeout!r}",
                flow=flow.name,
                step=step,
            )
        if outcome.names:
            codec.dumps(list(outcome.names), what="event names")
        for name in outcome.names:
            if not isinstance(name, str) or "|" in codec.check_name(name, "event name"):
                raise DefinitionError(
                    f"event name {name!r} may not contain '|'", flow=flow.name, step=step
                )
        for action in (outcome.retry, outcome.resolve):
            if action is not None and (not outcome.attention or action not in outcome.names):
                raise DefinitionError(
                    f"an operator's event {action!r} needs attention=True and must be one "
                    "of the awaited names",
                    flow=flow.name,
                    step=step,
                )
    if isinstance(outcome, Sleep | WaitEvent):
        then = outcome.then or flow.next_after(step)
        if then is None or not flow.has_step(then):
            raise DefinitionError(
                f"{type(outcome).__name__} needs then= naming a step (got {outcome.then!r})",
                flow=flow.name,
                step=step,
            )
        if isinstance(outcome, Sleep) and (outcome.seconds is None) == (outcome.until is None):
            raise DefinitionError(
                "Sleep needs exactly one of seconds= or until=", flow=flow.name, step=step
            )
    return outcome


def _finite_time(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _describe(outcome: Outcome | None) -> dict[str, Any]:
    if outcome is None:
        return {"next": "default"}
    if isinstance(outcome, Goto):
        return {"goto": outcome.step}
    if isinstance(outcome, Complete):
        return {"complete": True}
    if isinstance(outcome, Fail):
        return {"fail": outcome.reason}
    if isinstance(outcome, Cancelled):
        return {"cancelled": outcome.reason}
    if isinstance(outcome, Sleep):
        return {"sleep": outcome.seconds, "until": outcome.until, "then": outcome.then}
    return {"wait": list(outcome.names), "timeout": outcome.timeout, "then": outcome.then}
