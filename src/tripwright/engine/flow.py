"""Flow definitions: named steps, each an async action with a retry policy and a timeout.

A step returns what happens next: go to another step, finish, fail, sleep, or wait for an
event. Returning ``None`` continues with the next step in declaration order (or completes
the run after the last one), so a linear flow needs no routing at all::

    flow = Flow("greet", version="1")

    @flow.step(retry=RetryPolicy(max_attempts=5), timeout=10)
    async def reserve(ctx: StepContext) -> None:
        ctx.context["hold"] = await provider.hold(key=ctx.idempotency_key)

    @flow.step()
    async def confirm(ctx: StepContext) -> Complete:
        return Complete({"hold": ctx.context["hold"]})
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias, overload

from tripwright.engine import codec
from tripwright.engine.children import parent_link
from tripwright.engine.clock import Clock
from tripwright.engine.records import (
    DeadLetter,
    EventRecord,
    JournalKind,
    NewEvent,
    NewRun,
    OutboxMessage,
    RunCancel,
    RunMessage,
)
from tripwright.engine.retry import RetryPolicy
from tripwright.engine.summary import PositionFn
from tripwright.errors import ConfigurationError, DefinitionError

__all__ = [
    "Cancelled",
    "Complete",
    "Fail",
    "Flow",
    "Goto",
    "Outcome",
    "Sleep",
    "StepContext",
    "StepFn",
    "StepSpec",
    "WaitEvent",
]

#: Turns a received event's payload into what its journal entry keeps.
ReceivedFn: TypeAlias = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Goto:
    """Continue with the named step."""

    step: str


@dataclass(frozen=True, slots=True)
class Complete:
    """Finish the run successfully with ``result`` (JSON)."""

    result: Any = None


@dataclass(frozen=True, slots=True)
class Fail:
    """Finish the run as failed, with a reason and optional JSON details."""

    reason: str
    details: Any = None


@dataclass(frozen=True, slots=True)
class Cancelled:
    """Finish the run as cancelled (after a cancel's clean-up, say)."""

    reason: str = "cancelled"


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait durably for ``seconds`` (or until the time ``until``), then run ``then``."""

    seconds: float | None = None
    until: float | None = None
    then: str | None = None


@dataclass(frozen=True, slots=True)
class WaitEvent:
    """Wait durably for an event named in ``names`` (any event if empty).

    The step ``then`` runs with ``ctx.event`` set to the event, or with ``ctx.timed_out``
    true when ``timeout`` seconds pass first.
    """

    names: tuple[str, ...] = ()
    timeout: float | None = None
    then: str | None = None
    #: Wait as ``needs_attention``: an operator's event is awaited.
    attention: bool = False
    #: With ``attention``: the events (among ``names``) that an operator's
    #: :meth:`Engine.retry <tripwright.engine.Engine.retry>` and ``Engine.resolve`` send.
    retry: str | None = None
    resolve: str | None = None


Outcome: TypeAlias = Goto | Complete | Fail | Cancelled | Sleep | WaitEvent
StepFn: TypeAlias = Callable[["StepContext"], Awaitable[Outcome | None]]


@dataclass(frozen=True, slots=True)
class StepSpec:
    """A step of a flow: its action and how the engine runs it."""

    name: str
    fn: StepFn
    retry: RetryPolicy
    timeout: float | None
    on_failure: str | None
    #: Events this step may receive in a row, in-process, under one checkpoint (1: a
    #: checkpoint per step). How often the run is written, not what it does: not part of
    #: the definition's hash.
    batch: int = 1

    def describe(self) -> dict[str, Any]:
        code = getattr(self.fn, "__code__", None)
        return {
            "name": self.name,
            "fn": getattr(self.fn, "__qualname__", repr(self.fn)),
            "code": hashlib.sha256(code.co_code).hexdigest()[:16] if code else None,
            "retry": self.retry.describe(),
            "timeout": self.timeout,
            "on_failure": self.on_failure,
        }


class Flow:
    """A named, versioned flow definition made of steps."""

    def __init__(
        self,
        name: str,
        version: str = "1",
        *,
        description: str = "",
        default_retry: RetryPolicy | None = None,
        default_timeout: float | None = None,
        on_cancel: str | None = None,
        position: PositionFn | None = None,
        received: ReceivedFn | None = None,
    ) -> None:
        if (
            not name
            or len(name) > codec.MAX_NAME
            or not name.replace("_", "").replace("-", "").replace(".", "").isalnum()
        ):
            raise DefinitionError(f"invalid flow name {name!r}: use letters, digits, . _ -")
        if not version or "@" in version:
            raise DefinitionError(f"invalid flow version {version!r}", flow=name)
        self.name = name
        self.version = str(version)
        self.description = description
        self.default_retry = default_retry or RetryPolicy()
        self.default_timeout = default_timeout
        #: A step that a cancel runs instead of stopping the run at once (a saga's
        #: compensation); it sees the cancel as ``ctx.failure``.
        self.on_cancel = on_cancel
        #: How run control describes a run's position in this flow's model (a saga's
        #: element and phase, a state machine's configuration); None: its engine step.
        self.position = position
        #: What the journal keeps of a received event's payload (None: all of it). A
        #: model whose events are kept elsewhere journals a reference to them.
        self.received = received
        self._steps: dict[str, StepSpec] = {}
        self._order: list[str] = []
        self._start: str | None = None
        self._hash: str | None = None

    @property
    def key(self) -> str:
        """``name@version``: how runs refer to this definition."""
        return f"{self.name}@{self.version}"

    @overload
    def step(self, fn: StepFn, /) -> StepFn: ...

    @overload
    def step(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        on_failure: str | None = None,
        start: bool = False,
    ) -> Callable[[StepFn], StepFn]: ...

    def step(
        self,
        fn: StepFn | None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        on_failure: str | None = None,
        start: bool = False,
    ) -> StepFn | Callable[[StepFn], StepFn]:
        """Register an async step; usable bare (``@flow.step``) or with options."""

        def register(func: StepFn) -> StepFn:
            self.add_step(
                name or str(getattr(func, "__name__", "")),
                func,
                retry=retry,
                timeout=timeout,
                on_failure=on_failure,
                start=start,
            )
            return func

        return register(fn) if fn is not None else register

    def add_step(
        self,
        name: str,
        fn: StepFn,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        on_failure: str | None = None,
        start: bool = False,
        batch: int = 1,
    ) -> StepSpec:
        """Register ``fn`` as the step ``name`` (the imperative twin of :meth:`step`).

        ``batch`` > 1: when the step waits for an event that is already queued, the run
        receives it at once and runs on without writing a checkpoint, up to ``batch``
        received events; one checkpoint then commits them all. A step failing in the
        batch commits the steps before it with its own failed attempt; a crash loses the
        batch's steps, which run again (their idempotency keys are the same).
        """
        if not name:
            raise DefinitionError("a step needs a name", flow=self.name)
        if len(name) > codec.MAX_NAME:
            raise DefinitionError(f"step name over {codec.MAX_NAME} characters", flow=self.name)
        if name in self._steps:
            raise DefinitionError(f"duplicate step name {name!r}", flow=self.name, step=name)
        if not inspect.iscoroutinefunction(fn) and not callable(fn):
            raise DefinitionError("a step must be an async callable", flow=self.name, step=name)
        if timeout is not None and timeout <= 0:
            raise DefinitionError("a step timeout must be > 0", flow=self.name, step=name)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise DefinitionError("a step's batch must be an int >= 1", flow=self.name, step=name)
        effective_timeout = timeout if timeout is not None else self.default_timeout
        spec = StepSpec(name, fn, retry or self.default_retry, effective_timeout, on_failure, batch)
        self._steps[name] = spec
        self._order.append(name)
        if start:
            if self._start is not None:
                raise DefinitionError("two start steps", flow=self.name, step=name)
            self._start = name
        self._hash = None
        return spec

    @property
    def steps(self) -> list[StepSpec]:
        """Steps in declaration order."""
        return [self._steps[n] for n in self._order]

    @property
    def start_step(self) -> str:
        if not self._order:
            raise DefinitionError("flow has no steps", flow=self.name)
        return self._start or self._order[0]

    def get_step(self, name: str) -> StepSpec:
        try:
            return self._steps[name]
        except KeyError:
            raise DefinitionError(f"unknown step {name!r}", flow=self.name, step=name) from None

    def has_step(self, name: str) -> bool:
        return name in self._steps

    def next_after(self, name: str) -> str | None:
        """The step declared after ``name``, or None after the last."""
        index = self._order.index(name)
        return self._order[index + 1] if index + 1 < len(self._order) else None

    def validate(self) -> None:
        """Raise :class:`DefinitionError` if the definition cannot run."""
        if not self._order:
            raise DefinitionError("flow has no steps", flow=self.name)
        if self.on_cancel is not None and self.on_cancel not in self._steps:
            raise DefinitionError(
                f"on_cancel names unknown step {self.on_cancel!r}", flow=self.name
            )
        for spec in self._steps.values():
            if spec.on_failure is not None and spec.on_failure not in self._steps:
                raise DefinitionError(
                    f"on_failure names unknown step {spec.on_failure!r}",
                    flow=self.name,
                    step=spec.name,
                )

    @property
    def definition_hash(self) -> str:
        """A digest of the steps, their policies and their code."""
        if self._hash is None:
            body = json.dumps(
                {
                    "name": self.name,
                    "version": self.version,
                    "start": self.start_step,
                    "steps": [s.describe() for s in self.steps],
                },
                sort_keys=True,
            )
            self._hash = hashlib.sha256(body.encode()).hexdigest()
        return self._hash

    def __repr__(self) -> str:
        return f"Flow({self.key!r}, steps={self._order!r})"


def journaled_payload(flow: Flow, event: EventRecord) -> Any:
    """What the journal keeps of ``event``'s payload (the flow may keep a reference)."""
    return event.payload if flow.received is None else flow.received(event.payload)


@dataclass(slots=True)
class StepEffects:
    """What a step asked for besides its outcome; committed only if the step succeeds."""

    outbox: list[OutboxMessage] = field(default_factory=list)
    timers: list[NewEvent] = field(default_factory=list)
    cancelled_timers: list[str] = field(default_factory=list)
    records: list[tuple[JournalKind, dict[str, Any]]] = field(default_factory=list)
    children: list[NewRun] = field(default_factory=list)
    messages: list[RunMessage] = field(default_factory=list)
    cancels: list[RunCancel] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: Events of ``StepContext.queued`` the step received (see ``StepContext.receive``).
    received: list[EventRecord] = field(default_factory=list)


class StepContext:
    """What a running step sees and can do.

    ``context`` is the run's mutable JSON working state; changes commit with the step.
    ``idempotency_key`` is derived from the run and the step (and how many times the
    step already completed in this run), identical for every attempt and after a crash:
    pass it to providers so they never apply the same effect twice.

    ``queued`` are external events already queued for the run behind ``event``, in queue
    order, as far as the worker read them ahead (empty when it did not): a step about to
    wait for any event may :meth:`receive` them in this step instead.
    """

    __slots__ = (
        "_effects",
        "attempt",
        "clock",
        "context",
        "correlation_id",
        "event",
        "failure",
        "flow",
        "idempotency_key",
        "input",
        "owner",
        "queued",
        "run_id",
        "step",
        "timed_out",
    )

    def __init__(
        self,
        *,
        run_id: str,
        flow: Flow,
        step: str,
        attempt: int,
        idempotency_key: str,
        correlation_id: str,
        owner: str | None,
        context: dict[str, Any],
        input: Any,
        clock: Clock,
        event: EventRecord | None = None,
        timed_out: bool = False,
        failure: dict[str, Any] | None = None,
        queued: tuple[EventRecord, ...] = (),
    ) -> None:
        self.run_id = run_id
        self.flow = flow
        self.step = step
        self.attempt = attempt
        self.idempotency_key = idempotency_key
        self.correlation_id = correlation_id
        self.owner = owner
        self.context = context
        self.input = input
        self.clock = clock
        self.event = event
        self.timed_out = timed_out
        self.failure = failure
        self.queued = queued
        self._effects = StepEffects()

    @property
    def now(self) -> float:
        return self.clock.now()

    @property
    def effects(self) -> StepEffects:
        return self._effects

    def publish(
        self,
        topic: str,
        type: str,
        data: Any,
        *,
        subject: str | None = None,
        headers: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> str:
        """Queue a message in the outbox; it commits with this step. Returns its id."""
        codec.check_name(topic, "topic")
        codec.check_name(type, "event type")
        if subject is not None:
            codec.check_name(subject, "subject")
        codec.dumps(headers or {}, what="message headers", run_id=self.run_id)
        message_id = event_id or f"{self.idempotency_key}/{len(self._effects.outbox)}"
        self._effects.outbox.append(
            OutboxMessage(
                event_id=message_id,
                topic=topic,
                type=type,
                subject=subject,
                data=codec.dumps(data, what="published data", run_id=self.run_id),
                headers=dict(headers or {}),
            )
        )
        return message_id

    def set_timer(
        self,
        name: str,
        *,
        after: float | None = None,
        at: float | None = None,
        event: str | None = None,
        payload: Any = None,
    ) -> float:
        """Set a durable timer; when due it is delivered to the run as event ``event``
        (default: the timer's name). Returns the time it fires."""
        if (after is None) == (at is None):
            raise ConfigurationError("set_timer needs exactly one of after= or at=")
        codec.check_name(name, "timer name")
        if event is not None:
            codec.check_name(event, "timer event name")
        fire_at = at if at is not None else self.clock.now() + (after or 0.0)
        self._effects.timers.append(
            NewEvent(
                name=event or name,
                payload=codec.dumps(payload, what="timer payload", run_id=self.run_id),
                visible_at=fire_at,
                timer_name=name,
            )
        )
        return fire_at

    def cancel_timer(self, name: str) -> None:
        """Cancel every pending timer of this run called ``name``."""
        self._effects.cancelled_timers.append(codec.check_name(name, "timer name"))

    def start_child(
        self,
        flow: Flow,
        input: Any = None,
        *,
        run_id: str,
        on_end: str,
        data: Any = None,
        correlation_id: str | None = None,
    ) -> str:
        """Start a run of ``flow`` with this step's checkpoint; returns its id.

        ``run_id`` must be deterministic (derived from this run, say): a step that runs
        again after a crash asks for the same child, and a child whose id exists is not
        created twice. When the child ends, its parent (this run) is sent the event
        ``on_end`` with ``{"child", "status", "result", "error", "data"}``. The child
        shares this run's correlation id unless ``correlation_id`` is given.
        """
        codec.check_name(run_id, "run id")
        if len(run_id) > 64:
            raise ConfigurationError(f"a run id is at most 64 characters: {run_id!r}")
        codec.check_name(on_end, "event name")
        flow.validate()
        link = parent_link(self.run_id, on_end, data)
        codec.dumps(link, what="child link data", run_id=self.run_id)
        codec.dumps(input, what="child run input", run_id=self.run_id)
        self._effects.children.append(
            NewRun(
                id=run_id,
                flow_name=flow.name,
                flow_version=flow.version,
                definition_hash=flow.definition_hash,
                step=flow.start_step,
                input=input,
                context={},
                correlation_id=correlation_id or self.correlation_id,
                owner=self.owner,
                idempotency_key=None,
                created_at=self.clock.now(),
                state={"parent": link},
            )
        )
        return run_id

    def cancel_child(self, run_id: str, reason: str, *, flow: Flow | None = None) -> None:
        """Cancel run ``run_id`` with this step's checkpoint: at ``flow``'s ``on_cancel``
        step if it has one (a saga compensates), else at once. A run that already ended
        is left alone (its end notice may still be on its way)."""
        self._effects.cancels.append(
            RunCancel(run_id, reason, flow.on_cancel if flow is not None else None)
        )

    def send_run(self, run_id: str, name: str, payload: Any = None, *, dedupe_key: str) -> None:
        """Queue event ``name`` for run ``run_id`` with this step's checkpoint (dropped if
        that run has ended); ``dedupe_key`` keeps a re-run step from sending it twice."""
        codec.check_name(name, "event name")
        codec.check_name(dedupe_key, "dedupe key")
        self._effects.messages.append(
            RunMessage(
                run_id,
                name,
                codec.dumps(payload, what="event payload", run_id=self.run_id),
                dedupe_key,
            )
        )

    def dead_letter(self, letter: DeadLetter) -> None:
        """Write ``letter`` to the dead-letter store with this step's checkpoint (models
        that consume events use it: the event is given up on in the same transaction)."""
        self._effects.dead_letters.append(letter)

    def receive(self, event: EventRecord) -> None:
        """Receive the next event of :attr:`queued` in this step, as if the step had waited
        for any event and run again at once: it is consumed with this step's checkpoint
        and journaled as received here, in order with the step's other entries.

        Events are received in queue order, and none after the step set or cancelled a
        timer (the timer may be due first: the run waits for the store to say).
        """
        taken = self._effects.received
        if len(taken) >= len(self.queued) or self.queued[len(taken)] is not event:
            raise ConfigurationError("a step receives the queued events in their order")
        if self._effects.timers or self._effects.cancelled_timers:
            raise ConfigurationError("a step that set or cancelled a timer receives no more")
        taken.append(event)
        self._effects.records.append(
            (
                JournalKind.EVENT_RECEIVED,
                {
                    "event": event.name,
                    "event_id": event.id,
                    "timer": None,
                    "payload": journaled_payload(self.flow, event),
                },
            )
        )

    def note(self, message: str, **data: Any) -> None:
        """Add a free-form note to the journal."""
        self.record(JournalKind.NOTE, message=message, **data)

    def record(self, kind: JournalKind, **data: Any) -> None:
        """Add a typed journal entry (compensation, transition, ...) committed with the step.

        Flow models use it to write their own history into the run's journal.
        """
        codec.dumps(data, what=f"{kind.value} journal data", run_id=self.run_id)
        self._effects.records.append((kind, data))
