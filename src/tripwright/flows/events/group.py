"""Consumer groups: handlers of typed events, run durably on the engine.

A group's handlers declare what they consume and what they may publish::

    billing = ConsumerGroup("billing", retry=RetryPolicy(max_attempts=5))

    @billing.handler(TripConfirmed, publishes=(PaymentCaptured,))
    async def capture(event: TripConfirmed, ctx: HandlerContext) -> None:
        await gateway.capture(event.total, key=ctx.idempotency_key)
        ctx.publish(PaymentCaptured(trip_id=event.trip_id))

How it runs: per (group, subject) there is one long-lived **mailbox run** of the group's
engine flow (``events.<group>``), with a deterministic id. Delivering an event queues it
for that run under the event's id, which the run's inbox keeps once; the run handles one
event per step and waits again. So the checkpoint consumes the event, commits the
handler's state and its published events (the outbox) in one transaction; the run's lease
orders a subject's events across workers; retries are the engine's retry policy; and an
event the group gives up on is written to the dead-letter store by that same checkpoint,
after which the mailbox goes on with the subject's next event.

Events of a subject already queued are handled in a row, ``batch`` (default 32) to a
checkpoint. An event whose handler fails ends the batch: the checkpoint commits the events
before it with its failed attempt, which is retried (or dead-lettered) as when handled
alone; a crash loses the uncommitted batch, whose events are handled again.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tripwright.bus.envelope import CloudEvent, schema_uri
from tripwright.bus.event import Event
from tripwright.engine import codec
from tripwright.engine.clock import Clock
from tripwright.engine.flow import Flow, StepContext, WaitEvent
from tripwright.engine.records import DeadLetter, EventRecord, InboxDelivery, JournalKind
from tripwright.engine.retry import RetryPolicy
from tripwright.errors import (
    ConfigurationError,
    ContextNotSerializableError,
    DefinitionError,
    EnvelopeError,
    EventSchemaError,
)

__all__ = ["ConsumerGroup", "HandlerContext", "HandlerSpec", "mailbox_id"]

HandlerFn = Callable[[Any, "HandlerContext"], Awaitable[None]]
HF = TypeVar("HF", bound=HandlerFn)

HANDLE = "handle"
_WAIT = WaitEvent(then=HANDLE)
#: Errors that never retry (the engine's own list, plus bad data).
_NEVER_RETRY = (DefinitionError, ContextNotSerializableError, ConfigurationError)
_IDS = uuid.UUID("8f6f1f9e-64b7-4bd4-9a57-2a8cb1a9b0b1")


def mailbox_id(group: str, subject: str) -> str:
    """The id of ``group``'s mailbox run for ``subject`` (deterministic, 44 characters)."""
    digest = hashlib.sha256(f"{group}\0{subject}".encode()).hexdigest()[:40]
    return f"mbx-{digest}"


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A handler of a group: what it consumes and what it may publish."""

    name: str
    fn: HandlerFn
    consumes: tuple[type[Event], ...]
    publishes: tuple[type[Event], ...]


class HandlerContext:
    """What a handler sees and can do while it handles one event.

    ``state`` is the group's JSON state for this subject (a trip, say), committed with the
    handler. ``idempotency_key`` is ``"<group>:<event id>"``: the same on every attempt,
    after a crash and after a redrive; hand it to providers. ``publish`` queues events in
    the outbox of the same transaction: a handler that fails publishes nothing.
    """

    def __init__(
        self,
        *,
        group: str,
        handler: HandlerSpec,
        envelope: CloudEvent,
        topic: str,
        attempt: int,
        state: dict[str, Any],
        clock: Clock,
        run_id: str,
    ) -> None:
        self.group = group
        self.handler = handler.name
        self.envelope = envelope
        self.topic = topic
        self.attempt = attempt
        self.state = state
        self.clock = clock
        self.run_id = run_id
        self.idempotency_key = f"{group}:{envelope.id}"
        self._spec = handler
        self._published: list[tuple[Event, str | None]] = []

    @property
    def event_id(self) -> str:
        return self.envelope.id

    @property
    def subject(self) -> str | None:
        return self.envelope.subject

    @property
    def correlation_id(self) -> str | None:
        return self.envelope.correlationid or self.envelope.subject

    @property
    def now(self) -> float:
        return self.clock.now()

    def publish(self, event: Event, *, subject: str | None = None) -> str:
        """Publish ``event`` (default subject: this event's) with this handler's commit;
        returns its id, which is the same if the handler runs again."""
        if not isinstance(event, tuple(self._spec.publishes)):
            declared = ", ".join(t.type_name for t in self._spec.publishes) or "nothing"
            raise DefinitionError(
                f"handler {self.handler!r} of group {self.group!r} published "
                f"{type(event).type_name!r}, but declares publishes=({declared})"
            )
        self._published.append((event, subject))
        return self._published_id(len(self._published) - 1)

    def _published_id(self, index: int) -> str:
        return uuid.uuid5(_IDS, f"{self.idempotency_key}/{index}").hex

    def _commit(self, ctx: StepContext) -> None:
        """Move the published events into the step's outbox."""
        if not self._published:
            return
        trace = _child_trace(self.envelope)
        for index, (event, subject) in enumerate(self._published):
            event_id = self._published_id(index)
            headers: dict[str, Any] = {
                "source": f"/tripwright/groups/{self.group}",
                "dataschema": schema_uri(event.type_name, event.version),
                "traceparent": _with_span(trace, event_id),
            }
            correlation = self.correlation_id
            if correlation is not None:
                headers["correlationid"] = correlation
            ctx.publish(
                event.topic,
                event.type_name,
                event.to_data(),
                subject=subject if subject is not None else self.subject,
                headers=headers,
                event_id=event_id,
            )


def _child_trace(envelope: CloudEvent) -> str:
    """The trace id to continue: the incoming event's, or one derived from its id."""
    if envelope.traceparent is not None:
        return envelope.traceparent.split("-")[1]
    return hashlib.sha256(envelope.id.encode()).hexdigest()[:32]


def _with_span(trace_id: str, event_id: str) -> str:
    span = hashlib.sha256(event_id.encode()).hexdigest()[:16]
    return f"00-{trace_id}-{span}-01"


class ConsumerGroup:
    """A consumer group: its handlers, their retry policy, and the engine flow that runs
    them (one mailbox run per subject)."""

    def __init__(
        self,
        name: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        batch: int = 32,
        description: str = "",
    ) -> None:
        self.name = name
        # Validates the name as a flow name would be.
        self._flow = Flow(
            f"events.{name}", version="1", description=description, received=_reference
        )
        self.retry = retry or RetryPolicy(max_attempts=5, initial_interval=1.0)
        if timeout is not None and timeout <= 0:
            raise DefinitionError("a handler timeout must be > 0", flow=self._flow.name)
        self.timeout = timeout
        self.batch = batch
        self.description = description
        self._handlers: list[HandlerSpec] = []
        self._by_type: dict[str, tuple[HandlerSpec, type[Event]]] = {}
        self._flow.add_step("wait", self._wait_step, start=True, batch=batch)
        self._flow.add_step(HANDLE, self._handle_step, retry=self.retry, batch=batch)

    # -- definition -----------------------------------------------------------------------
    def handler(
        self,
        *consumes: type[Event],
        publishes: Sequence[type[Event]] = (),
        name: str | None = None,
    ) -> Callable[[HF], HF]:
        """Register an async handler ``fn(event, ctx)`` of the event types ``consumes``."""

        def register(fn: HF) -> HF:
            self.add_handler(
                name or str(getattr(fn, "__name__", "")), fn, consumes, publishes=publishes
            )
            return fn

        return register

    def add_handler(
        self,
        name: str,
        fn: Callable[[Any, HandlerContext], Awaitable[None]],
        consumes: Sequence[type[Event]],
        *,
        publishes: Sequence[type[Event]] = (),
    ) -> HandlerSpec:
        """Register ``fn`` as handler ``name`` (the imperative twin of :meth:`handler`)."""
        if not name:
            raise DefinitionError("a handler needs a name", flow=self._flow.name)
        codec.check_name(name, "handler name")
        if any(h.name == name for h in self._handlers):
            raise DefinitionError(f"duplicate handler {name!r}", flow=self._flow.name)
        if not consumes:
            raise DefinitionError(f"handler {name!r} consumes nothing", flow=self._flow.name)
        for kind in (*consumes, *publishes):
            if not (isinstance(kind, type) and issubclass(kind, Event) and kind.type_name):
                raise DefinitionError(
                    f"handler {name!r}: {kind!r} is not a typed Event with a type_name",
                    flow=self._flow.name,
                )
        spec = HandlerSpec(name, fn, tuple(consumes), tuple(publishes))
        for kind in consumes:
            taken = self._by_type.get(kind.type_name)
            if taken is not None:
                raise DefinitionError(
                    f"{kind.type_name!r} is handled twice in group {self.name!r} "
                    f"({taken[0].name!r} and {name!r}); a group applies each event once",
                    flow=self._flow.name,
                )
            self._by_type[kind.type_name] = (spec, kind)
        self._handlers.append(spec)
        return spec

    @property
    def handlers(self) -> list[HandlerSpec]:
        return list(self._handlers)

    @property
    def consumes(self) -> dict[str, type[Event]]:
        """Event classes by type name."""
        return {type_name: kind for type_name, (_, kind) in self._by_type.items()}

    @property
    def topics(self) -> list[str]:
        """The topics this group subscribes to (those of the types it consumes)."""
        return sorted({kind.topic for kind in self.consumes.values()})

    def to_flow(self) -> Flow:
        """The engine flow of this group's mailbox runs (``events.<group>``)."""
        return self._flow

    def mailbox(self, subject: str) -> str:
        """The id of this group's mailbox run for ``subject``."""
        return mailbox_id(self.name, subject)

    def delivery(self, envelope: dict[str, Any], topic: str) -> InboxDelivery | None:
        """The inbox delivery of an envelope (a JSON object, validated when handled), or
        None when this group does not consume its type."""
        type_name = envelope.get("type")
        if not isinstance(type_name, str) or type_name not in self._by_type:
            return None
        event_id = str(envelope.get("id") or "")
        subject = envelope.get("subject")
        key = subject if isinstance(subject, str) and subject else f"event:{event_id}"
        correlation = envelope.get("correlationid") or key
        return InboxDelivery(
            run_id=mailbox_id(self.name, key),
            flow_name=self._flow.name,
            flow_version=self._flow.version,
            definition_hash=self._flow.definition_hash,
            then=HANDLE,
            correlation_id=str(correlation)[: codec.MAX_NAME],
            name=type_name,
            payload=codec.dumps({"topic": topic, "envelope": envelope}, what="event envelope"),
            dedupe_key=event_id[: codec.MAX_NAME],
        )

    # -- the mailbox flow -----------------------------------------------------------------
    async def _wait_step(self, ctx: StepContext) -> WaitEvent:
        return _WAIT

    async def _handle_step(self, ctx: StepContext) -> WaitEvent:
        record = ctx.event
        if record is None:
            return _WAIT
        payload = record.payload if isinstance(record.payload, dict) else {}
        topic = str(payload.get("topic") or "")
        raw = payload.get("envelope")
        try:
            if not isinstance(raw, dict):
                raise EnvelopeError("the queued event holds no envelope object")
            envelope = CloudEvent.from_decoded(raw)
        except (EnvelopeError, ContextNotSerializableError) as exc:
            self._dead(ctx, record, topic, "malformed", str(exc), raw=codec.dumps(raw))
            return _WAIT
        found = self._by_type.get(envelope.type)
        if found is None:
            ctx.note("no handler for this event type", event_id=envelope.id, type=envelope.type)
            return _WAIT
        spec, kind = found
        try:
            version = envelope.version
            if version is None:
                raise EventSchemaError(
                    f"{envelope.type} event carries no schema version (dataschema "
                    f"{envelope.dataschema!r})"
                )
            event = kind.from_data(kind.upcast(envelope.data, version))
        except EventSchemaError as exc:
            self._dead(ctx, record, topic, "schema", str(exc), envelope=envelope, handler=spec)
            return _WAIT
        # The handler works on the step's own copy of the state; what it was before is
        # kept to put back if the event is dead-lettered.
        before = codec.dumps(ctx.context)
        handler_ctx = HandlerContext(
            group=self.name,
            handler=spec,
            envelope=envelope,
            topic=topic,
            attempt=ctx.attempt,
            state=ctx.context,
            clock=ctx.clock,
            run_id=ctx.run_id,
        )
        try:
            await ctx.clock.run_with_timeout(spec.fn(event, handler_ctx), self.timeout)
            state = codec.dumps(handler_ctx.state, what="handler state", run_id=ctx.run_id)
            handler_ctx._commit(ctx)
        except Exception as exc:
            if not isinstance(exc, _NEVER_RETRY) and self.retry.should_retry(exc, ctx.attempt):
                raise
            ctx.context.clear()
            ctx.context.update(json.loads(before))
            ctx.effects.outbox.clear()
            error = {"type": type(exc).__name__, "message": codec.safe_text(exc)}
            self._dead(
                ctx,
                record,
                topic,
                "handler_failed",
                f"{spec.name} failed after {ctx.attempt} attempt(s): {error['message']}",
                envelope=envelope,
                handler=spec,
                error=error,
            )
            return _WAIT
        if handler_ctx.state is not ctx.context:  # the handler replaced its state
            ctx.context.clear()
            ctx.context.update(json.loads(state))
        return _WAIT

    def _dead(
        self,
        ctx: StepContext,
        record: EventRecord,
        topic: str,
        kind: str,
        reason: str,
        *,
        envelope: CloudEvent | None = None,
        raw: str | None = None,
        handler: HandlerSpec | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        event_id = envelope.id if envelope is not None else _raw_id(record, raw)
        ctx.dead_letter(
            DeadLetter(
                group=self.name,
                event_id=event_id,
                topic=topic,
                reason=codec.safe_text(reason, 2000),
                kind=kind,
                handler=handler.name if handler else None,
                type=envelope.type if envelope else record.name,
                subject=envelope.subject if envelope else None,
                envelope=codec.dumps(envelope.to_dict()) if envelope else None,
                raw=raw,
                error=None if error is None else codec.dumps(error),
                attempts=ctx.attempt,
                run_id=ctx.run_id,
                first_seen_at=record.created_at,
            )
        )
        ctx.record(
            JournalKind.DEAD_LETTERED,
            event_id=event_id,
            why=kind,
            reason=codec.safe_text(reason, 500),
            handler=handler.name if handler else None,
            attempts=ctx.attempt,
        )

    def __repr__(self) -> str:
        return f"ConsumerGroup({self.name!r}, handlers={[h.name for h in self._handlers]!r})"


def _reference(payload: Any) -> Any:
    """What a mailbox's journal keeps of a queued event: a reference (the envelope stays
    in the inbox and the outbox, and in the dead-letter store if it gets there)."""
    if not isinstance(payload, dict):
        return None
    envelope = payload.get("envelope")
    if not isinstance(envelope, dict):
        return {"topic": payload.get("topic")}
    return {
        "topic": payload.get("topic"),
        "id": envelope.get("id"),
        "subject": envelope.get("subject"),
        "dataschema": envelope.get("dataschema"),
    }


def _raw_id(record: EventRecord, raw: str | None) -> str:
    """An id for a message without a valid envelope: its own id if it has one."""
    payload = record.payload if isinstance(record.payload, dict) else {}
    envelope = payload.get("envelope")
    if isinstance(envelope, dict) and isinstance(envelope.get("id"), str) and envelope["id"]:
        return str(envelope["id"])[:300]
    return "raw-" + hashlib.sha256((raw or "").encode()).hexdigest()[:40]
