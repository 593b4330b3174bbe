"""The storage port: what the engine needs from a database.

Adapters live in sibling modules (``sqlite.py``, ``postgres.py``) and are exercised by
one contract test suite. Every method translates driver errors into :class:`StoreError`.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from tripwright.engine import codec
from tripwright.engine.children import stop_change
from tripwright.engine.records import (
    Checkpoint,
    ControlChange,
    DeadLetter,
    DeadLetterRecord,
    EventRecord,
    InboxDelivery,
    JournalEntry,
    NewRun,
    OutboxMessage,
    OutboxRecord,
    RunRecord,
    RunStatus,
)

#: Routes one outbox row to the mailbox deliveries it makes (none: nobody subscribes).
Router: TypeAlias = Callable[[OutboxRecord], Sequence[InboxDelivery]]

__all__ = [
    "RUN_COLUMNS",
    "Router",
    "Store",
    "decode_event",
    "decode_journal",
    "decode_run",
    "wait_match",
]

RUN_COLUMNS = (
    "id, flow_name, flow_version, definition_hash, status, step, state, input, context, "
    "result, error, correlation_id, owner, idempotency_key, created_at, updated_at, due_at, "
    "wait_names, wait_deadline, lease_owner, lease_expires_at, lease_epoch, journal_seq"
)
#: A driver row (``sqlite3.Row`` or ``asyncpg.Record``): indexable by column name.
Row: TypeAlias = Any

EVENT_COLUMNS = "id, run_id, name, payload, kind, timer_name, visible_at, created_at"
JOURNAL_COLUMNS = "run_id, seq, kind, step, at, data, correlation_id"


class Store(ABC):
    """Durable storage of runs, journals, run events and the outbox."""

    #: ``sqlite`` or ``postgresql``.
    dialect: str
    #: How many group commits may be in flight at once.
    max_inflight_commits: int = 1

    @abstractmethod
    async def open(self) -> None:
        """Connect and check that the schema is current (see ``tripwright db upgrade``)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; later calls raise :class:`StoreClosedError`."""

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- runs -------------------------------------------------------------------------
    @abstractmethod
    async def create_runs(self, runs: Sequence[NewRun]) -> list[tuple[RunRecord, bool]]:
        """Insert runs (each with its ``run_created`` journal entry).

        A run whose (owner, idempotency key) already exists is not created again: the
        existing run is returned with ``False``.
        """

    @abstractmethod
    async def get_run(self, run_id: str) -> RunRecord:
        """The run, or :class:`RunNotFoundError`."""

    @abstractmethod
    async def list_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        correlation_id: str | None = None,
        owner: str | None = None,
        limit: int = 100,
        before: float | None = None,
    ) -> list[RunRecord]:
        """Runs matching every given filter, newest first."""

    @abstractmethod
    async def count_runs(self, *, flow: str | None = None) -> dict[str, int]:
        """How many runs are in each status."""

    @abstractmethod
    async def control_run(
        self, run_id: str, now: float, decide: Callable[[RunRecord], ControlChange]
    ) -> RunRecord:
        """Apply an operator change: read the run (locked), let ``decide`` compute the
        change (it raises :class:`InvalidRunStateError` to refuse), write it with a journal
        entry, bump the lease epoch and free the lease, all in one transaction."""

    async def cancel_run(self, run_id: str, now: float, reason: str) -> RunRecord:
        """Cancel an active or paused run at once, fencing out any worker that holds it
        (a child run's parent hears of it)."""
        return await self.control_run(run_id, now, lambda run: stop_change(run, reason))

    # -- leases -----------------------------------------------------------------------
    @abstractmethod
    async def claim_runs(
        self, worker_id: str, flow_keys: Sequence[str], now: float, limit: int, lease_ttl: float
    ) -> list[RunRecord]:
        """Lease up to ``limit`` due runs whose lease is free or expired.

        No run is ever handed to two workers with overlapping leases; each claim bumps the
        run's lease epoch, which fences the previous holder's checkpoints.
        """

    @abstractmethod
    async def heartbeat(
        self, worker_id: str, run_ids: Sequence[str], now: float, lease_ttl: float
    ) -> set[str]:
        """Extend this worker's leases; return the ids it still holds."""

    @abstractmethod
    async def release_runs(self, worker_id: str, run_ids: Sequence[str]) -> None:
        """Give leases back so another worker may take the runs at once."""

    @abstractmethod
    async def next_due_at(
        self, flow_keys: Sequence[str], *, include_leased: bool = False
    ) -> float | None:
        """The earliest time an unleased active run becomes due, if any.

        With ``include_leased``, runs held by a worker count too, at the later of their due
        time and their lease's end (simulations and tests use it to jump past a dead
        worker's leases; it scans every active run, so workers do not).
        """

    # -- checkpoints ------------------------------------------------------------------
    @abstractmethod
    async def commit(self, checkpoints: Sequence[Checkpoint]) -> list[bool]:
        """Commit checkpoints in one transaction (group commit).

        Returns, per checkpoint, True if committed and False if fenced out (the lease
        was lost); a fenced checkpoint leaves no trace and does not affect the others.
        """

    # -- run events -------------------------------------------------------------------
    @abstractmethod
    async def send_event(
        self,
        run_id: str,
        name: str,
        payload: str,
        now: float,
        *,
        visible_at: float | None = None,
        dedupe_key: str | None = None,
    ) -> int:
        """Queue an event for a run and wake it if it waits for that name.

        With a ``dedupe_key`` already used for this run, nothing is queued and the first
        event's id is returned.
        """

    @abstractmethod
    async def next_event(
        self, run_id: str, names: Sequence[str] | None, now: float
    ) -> EventRecord | None:
        """The run's earliest visible pending event matching ``names`` (any if None)."""

    @abstractmethod
    async def get_event(self, event_id: int) -> EventRecord | None:
        """An event by id, if it is still pending."""

    @abstractmethod
    async def pending_events(self, run_id: str) -> list[EventRecord]:
        """All pending events and timers of a run, in delivery order."""

    # -- journal ----------------------------------------------------------------------
    @abstractmethod
    async def journal(self, run_id: str, *, after_seq: int = 0) -> list[JournalEntry]:
        """A run's journal in sequence order."""

    @abstractmethod
    async def journal_by_correlation(self, correlation_id: str) -> list[JournalEntry]:
        """Journal entries of every run sharing ``correlation_id``, in time order."""

    # -- outbox -----------------------------------------------------------------------
    @abstractmethod
    async def outbox_count(self, *, published: bool | None = None) -> int:
        """How many outbox messages exist (optionally only published/unpublished)."""

    @abstractmethod
    async def append_outbox(self, messages: Sequence[OutboxMessage], now: float) -> None:
        """Commit messages to the outbox outside any run (publishing from the API).

        A message whose event id is already in the outbox is not added again.
        """

    # -- event bus ----------------------------------------------------------------------
    @abstractmethod
    async def next_events(
        self,
        run_id: str,
        names: Sequence[str] | None,
        now: float,
        limit: int,
        *,
        timers: bool = False,
    ) -> list[EventRecord]:
        """Up to ``limit`` visible pending events of a run matching ``names``, in delivery
        order; fired timers among them only with ``timers=True``."""

    @abstractmethod
    async def deliver(self, deliveries: Sequence[InboxDelivery], now: float) -> list[bool]:
        """Queue events in mailbox runs, in one transaction, creating missing mailboxes
        (race-free with other workers); per delivery, False if its dedupe key was already
        in that mailbox's inbox (a duplicate: nothing is queued)."""

    @abstractmethod
    async def relay_outbox(self, route: Router, limit: int, now: float) -> int:
        """Move up to ``limit`` unpublished outbox rows, oldest first, into the mailboxes
        ``route`` names and mark them published, all in one transaction; return how many.

        Only one caller relays at a time (others get 0 at once), so rows leave in order.
        """

    @abstractmethod
    async def claim_outbox(
        self, relay: str, owner: str, now: float, lease_ttl: float, limit: int
    ) -> tuple[int, list[OutboxRecord]] | None:
        """Take (or extend) the relay lease ``relay`` and read up to ``limit`` unpublished
        rows, oldest first; None if another owner holds an unexpired lease. Returns the
        lease epoch, which :meth:`mark_published` checks."""

    @abstractmethod
    async def mark_published(
        self, relay: str, owner: str, epoch: int, ids: Sequence[int], now: float
    ) -> bool:
        """Mark outbox rows published if ``owner`` still holds the lease at ``epoch``."""

    @abstractmethod
    async def add_dead_letter(self, letter: DeadLetter, now: float) -> int:
        """Write a dead letter outside any checkpoint (a message refused on arrival); the
        id of the existing one if the (group, event id) is there already."""

    @abstractmethod
    async def list_dead_letters(
        self, *, group: str | None = None, limit: int = 100
    ) -> list[DeadLetterRecord]:
        """Dead letters, oldest first."""

    @abstractmethod
    async def get_dead_letter(self, letter_id: int) -> DeadLetterRecord:
        """A dead letter, or :class:`DeadLetterNotFoundError`."""

    @abstractmethod
    async def redrive_dead_letter(
        self, letter_id: int, delivery: InboxDelivery | None, now: float
    ) -> DeadLetterRecord:
        """Remove a dead letter and queue its event again, in one transaction: the event
        row its mailbox already holds (same id) becomes pending again, or ``delivery`` is
        queued when the mailbox never held it. Exactly one redrive of a letter wins."""

    @abstractmethod
    async def drop_dead_letter(self, letter_id: int) -> DeadLetterRecord:
        """Delete a dead letter for good."""

    @abstractmethod
    async def prune_events(self, before: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` consumed or cancelled run events created before
        ``before`` (inbox dedupe rows among them); return how many."""


def wait_match(names: Sequence[str] | None) -> str | None:
    """Encode a wait filter as ``|a|b|``; None (or empty) waits for any event."""
    return "|" + "|".join(names) + "|" if names else None


def _json_obj(value: Any) -> Any:
    if value is None or isinstance(value, dict | list):
        return value
    return codec.loads(value)


def decode_run(row: Row) -> RunRecord:
    """Build a :class:`RunRecord` from a row of ``RUN_COLUMNS``."""
    return RunRecord(
        id=row["id"],
        flow_name=row["flow_name"],
        flow_version=row["flow_version"],
        definition_hash=row["definition_hash"],
        status=RunStatus(row["status"]),
        step=row["step"],
        state=_json_obj(row["state"]) or {},
        input=_json_obj(row["input"]),
        context=_json_obj(row["context"]) or {},
        result=_json_obj(row["result"]),
        error=_json_obj(row["error"]),
        correlation_id=row["correlation_id"],
        owner=row["owner"] or None,
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        due_at=row["due_at"],
        wait_names=row["wait_names"],
        wait_deadline=row["wait_deadline"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        lease_epoch=row["lease_epoch"],
        journal_seq=row["journal_seq"],
    )


def decode_event(row: Row) -> EventRecord:
    return EventRecord(
        id=row["id"],
        run_id=row["run_id"],
        name=row["name"],
        payload=_json_obj(row["payload"]),
        kind=row["kind"],
        timer_name=row["timer_name"],
        visible_at=row["visible_at"],
        created_at=row["created_at"],
    )


def decode_journal(row: Row) -> JournalEntry:
    return JournalEntry(
        run_id=row["run_id"],
        seq=row["seq"],
        kind=row["kind"],
        step=row["step"],
        at=row["at"],
        data=_json_obj(row["data"]) or {},
        correlation_id=row["correlation_id"],
    )


DEAD_LETTER_COLUMNS = (
    "id, group_name, event_id, topic, reason, kind, handler, type, subject, envelope, raw, "
    "error, attempts, run_id, first_seen_at, failed_at"
)
OUTBOX_COLUMNS = "id, event_id, run_id, topic, type, subject, data, headers, created_at"


def decode_dead_letter(row: Row) -> DeadLetterRecord:
    return DeadLetterRecord(
        id=row["id"],
        group=row["group_name"],
        event_id=row["event_id"],
        topic=row["topic"],
        reason=row["reason"],
        kind=row["kind"],
        handler=row["handler"],
        type=row["type"],
        subject=row["subject"],
        envelope=_json_obj(row["envelope"]),
        raw=row["raw"],
        error=_json_obj(row["error"]),
        attempts=row["attempts"],
        run_id=row["run_id"],
        first_seen_at=row["first_seen_at"],
        failed_at=row["failed_at"],
    )


def decode_outbox(row: Row) -> OutboxRecord:
    return OutboxRecord(
        id=row["id"],
        event_id=row["event_id"],
        run_id=row["run_id"],
        topic=row["topic"],
        type=row["type"],
        subject=row["subject"],
        data=_json_obj(row["data"]),
        headers=_json_obj(row["headers"]) or {},
        created_at=row["created_at"],
    )


@functools.lru_cache(maxsize=64)
def mailbox_state(then: str) -> str:
    """The state a new mailbox run starts in: waiting for any event, then ``then``."""
    return codec.dumps(
        {"visits": {}, "wait": {"kind": "event", "names": None, "deadline": None, "then": then}}
    )
