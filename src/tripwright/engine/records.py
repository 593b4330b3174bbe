"""Plain records exchanged between the engine and its stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "WAITING_STATUSES",
    "Checkpoint",
    "ControlChange",
    "DeadLetter",
    "DeadLetterRecord",
    "EventRecord",
    "InboxDelivery",
    "JournalEntry",
    "JournalKind",
    "NewEvent",
    "NewRun",
    "OutboxMessage",
    "OutboxRecord",
    "RunCancel",
    "RunMessage",
    "RunRecord",
    "RunStatus",
]


class RunStatus(StrEnum):
    """Lifecycle of a run."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    #: Waiting for an operator: a model escalated (a compensation or a post-pivot step
    #: that keeps failing). It waits like ``waiting`` and is listed apart.
    NEEDS_ATTENTION = "needs_attention"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = frozenset(
    {RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING, RunStatus.NEEDS_ATTENTION}
)
#: Statuses in which a run waits for an event or a time.
WAITING_STATUSES = frozenset({RunStatus.WAITING, RunStatus.NEEDS_ATTENTION})
TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class JournalKind(StrEnum):
    """Types of journal entries."""

    RUN_CREATED = "run_created"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    ATTEMPT_FAILED = "attempt_failed"
    COMPENSATION = "compensation"
    TRANSITION = "transition"
    EVENT_SENT = "event_sent"
    EVENT_RECEIVED = "event_received"
    TIMER_SET = "timer_set"
    TIMER_FIRED = "timer_fired"
    TIMER_CANCELLED = "timer_cancelled"
    WAIT_STARTED = "wait_started"
    WAIT_TIMED_OUT = "wait_timed_out"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    RUN_PAUSED = "run_paused"
    RUN_RESUMED = "run_resumed"
    RUN_RETRIED = "run_retried"
    CANCEL_REQUESTED = "cancel_requested"
    CHILD_STARTED = "child_started"
    CHILD_CANCELLED = "child_cancelled"
    #: An event a consumer group gave up on went to the dead-letter store.
    DEAD_LETTERED = "dead_lettered"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to create."""

    id: str
    flow_name: str
    flow_version: str
    definition_hash: str
    step: str
    input: Any
    context: dict[str, Any]
    correlation_id: str
    owner: str | None
    idempotency_key: str | None
    created_at: float
    #: The run's engine state to start with (a child run's link to its parent).
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunMessage:
    """An event for another run, queued by a checkpoint (or an operator change).

    A message to a run that has ended is dropped; the same ``dedupe_key`` queues one
    event per run, however often the checkpoint that carries it is retried.
    """

    run_id: str
    name: str
    payload: str
    dedupe_key: str


@dataclass(frozen=True, slots=True)
class RunCancel:
    """A cancel of another run (a child), applied by a checkpoint.

    With ``handler`` (the run's ``on_cancel`` step) the run goes on at that step, which
    sees the cancel as its failure; without, it is cancelled at once. A run that has
    already ended, or is already cleaning up, is left alone.
    """

    run_id: str
    reason: str
    handler: str | None = None


@dataclass(slots=True)
class RunRecord:
    """A run as stored."""

    id: str
    flow_name: str
    flow_version: str
    definition_hash: str
    status: RunStatus
    step: str | None
    state: dict[str, Any]
    input: Any
    context: dict[str, Any]
    result: Any
    error: dict[str, Any] | None
    correlation_id: str
    owner: str | None
    idempotency_key: str | None
    created_at: float
    updated_at: float
    due_at: float | None
    wait_names: str | None
    wait_deadline: float | None
    lease_owner: str | None
    lease_expires_at: float | None
    lease_epoch: int
    journal_seq: int

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One entry of a run's append-only journal."""

    run_id: str
    seq: int
    kind: str
    step: str | None
    at: float
    data: dict[str, Any]
    correlation_id: str


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message to publish, committed with the checkpoint that produced it."""

    event_id: str
    topic: str
    type: str
    subject: str | None
    data: str
    headers: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A committed outbox row (``run_id`` is empty for messages published from the API)."""

    id: int
    event_id: str
    run_id: str
    topic: str
    type: str
    subject: str | None
    data: Any
    headers: dict[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A timer set by a checkpoint: an event to the run that becomes visible at ``visible_at``."""

    name: str
    payload: str
    visible_at: float
    timer_name: str


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event queued for a run (sent from outside, or a fired timer)."""

    id: int
    run_id: str
    name: str
    payload: Any
    kind: str
    timer_name: str | None
    visible_at: float
    created_at: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a consumer group could not handle, as written to the dead-letter store.

    One per (group, event id): writing the same one twice keeps the first. ``envelope``
    is the JSON-encoded envelope when there is a valid one; ``raw`` the raw body when not.
    """

    group: str
    event_id: str
    topic: str
    reason: str
    kind: str
    handler: str | None = None
    type: str | None = None
    subject: str | None = None
    envelope: str | None = None
    raw: str | None = None
    error: str | None = None
    attempts: int = 0
    run_id: str | None = None
    first_seen_at: float | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A dead letter as stored (``failed_at``: when it was written)."""

    id: int
    group: str
    event_id: str
    topic: str
    reason: str
    kind: str
    handler: str | None
    type: str | None
    subject: str | None
    envelope: dict[str, Any] | None
    raw: str | None
    error: dict[str, Any] | None
    attempts: int
    run_id: str | None
    first_seen_at: float | None
    failed_at: float


@dataclass(frozen=True, slots=True)
class InboxDelivery:
    """An event to queue in a consumer group's mailbox run (created if missing).

    ``dedupe_key`` (the event id) makes the delivery idempotent: the mailbox's inbox
    keeps one event per key, whatever is delivered again later.
    """

    run_id: str
    flow_name: str
    flow_version: str
    definition_hash: str
    then: str
    correlation_id: str
    name: str
    payload: str
    dedupe_key: str


@dataclass(slots=True)
class Checkpoint:
    """Everything one step changes, committed atomically or not at all.

    ``lease_owner`` and ``lease_epoch`` fence the write: a worker whose lease was taken
    over cannot commit. JSON fields arrive encoded, so that a value that cannot be encoded
    fails its own step and never a whole group commit.
    """

    run_id: str
    lease_owner: str
    lease_epoch: int
    status: RunStatus
    step: str | None
    state: str
    context: str
    now: float
    lease_expires_at: float | None
    due_at: float | None = None
    wait_names: str | None = None
    wait_deadline: float | None = None
    result: str | None = None
    error: str | None = None
    release: bool = False
    journal: list[JournalEntry] = field(default_factory=list)
    outbox: list[OutboxMessage] = field(default_factory=list)
    timers: list[NewEvent] = field(default_factory=list)
    cancelled_timers: list[str] = field(default_factory=list)
    consumed_events: list[int] = field(default_factory=list)
    #: Events this step gave up on, written to the dead-letter store with the checkpoint.
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: This checkpoint fails the run in place of one the store refused.
    rejection: bool = False
    #: Runs started by this checkpoint (children); a run whose id exists is kept as is.
    children: list[NewRun] = field(default_factory=list)
    #: Events for other runs (a parent told that its child ended, say).
    messages: list[RunMessage] = field(default_factory=list)
    #: Other runs this checkpoint cancels (children whose parent moved on).
    cancels: list[RunCancel] = field(default_factory=list)

    @property
    def links(self) -> bool:
        """Whether the checkpoint writes to runs other than its own."""
        return bool(self.children or self.messages or self.cancels)


@dataclass(slots=True)
class ControlChange:
    """An operator's change to a run (cancel, pause, resume, retry), applied atomically.

    The change bumps the lease epoch and frees the lease, so a worker executing the run
    is fenced out: its next checkpoint is refused.
    """

    status: RunStatus
    step: str | None
    state: dict[str, Any]
    due_at: float | None
    error: dict[str, Any] | None
    journal_kind: JournalKind
    journal_data: dict[str, Any]
    cancel_events: bool = False
    #: Events for other runs committed with the change (a parent told that its child
    #: ended).
    messages: list[RunMessage] = field(default_factory=list)
