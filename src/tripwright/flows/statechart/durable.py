"""Statecharts on the durable engine: every macrostep is one checkpoint (by default).

A :class:`StatechartFlow` is an engine :class:`~tripwright.engine.Flow` (named and
versioned like its chart) with one step, ``macrostep``. The run's context holds the
interpreter's snapshot (configuration, datamodel, queues, history, pending delayed
sends, invoked children), so a macrostep and everything it caused commit together::

    flow = StatechartFlow(booking)           # or register the chart: loading does this
    engine = Engine(store, [flow])
    run = await engine.start("booking", {"seats": 2})
    await send_event(engine, run.id, "hold")  # refused if no transition can take it

* The first step starts the machine; then the run waits for any event. Each event sent
  to the run (:meth:`Engine.send` or :func:`send_event`), queued durably and delivered
  in arrival order, is one macrostep in one engine step.
* A delayed ``send`` becomes a durable timer named by its send id (``ctx.set_timer``);
  ``cancel`` cancels that timer, and so does the session ending. When it is due, the
  timer is delivered like any event and the interpreter fires the send.
* Events the session sends itself (and replies of invoked services) wait in its queue;
  each is its own macrostep, committed before the next external event is taken.
* Every microstep is journaled as a ``transition`` entry (source and target
  configurations, the event with its id and origin, guard outcomes, actions); an event
  no transition takes is journaled as ignored; logs and error events are ``note``s.
* The run completes when the machine reaches a top-level final state, with its done
  data as the result.
* A macrostep past the chart's microstep limit raises
  :class:`~tripwright.errors.StatechartLoopError`, a ``FinalError``: the run fails at
  once, with its last checkpoint kept and the event that started the macrostep queued.
* ``macrosteps_per_checkpoint=N`` (default 1) lets one checkpoint hold up to ``N``
  macrosteps: the external events already queued behind the step's own (read ahead by
  the worker, no extra store round trip) while the machine waits and each macrostep had
  no effect besides its journal entries (a macrostep that sets or cancels a timer, sends,
  invokes or queues an event of its own is the last of its checkpoint). Each macrostep
  is journaled as its own (``event_received``, then its transitions). A crash before the
  checkpoint commits loses all of them together, and they run again from the previous
  checkpoint, deterministically (each at its event's time); effects are only ever in the
  last of them and commit with it, once. A macrostep that fails is undone and left to
  the next step, so it fails the run as it was before it, as with one per checkpoint.

Time inside the machine is *logical*: a macrostep runs at the time its stimulus became
due (a timer's due time, an event's send time), never earlier than the previous one. A
delayed send's timer is therefore set relative to when its cause was due, and a worker
that resumes after a crash reproduces the schedule the machine would have had.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from tripwright.engine import codec
from tripwright.engine.engine import Engine
from tripwright.engine.flow import (
    Complete,
    Flow,
    Goto,
    Outcome,
    StepContext,
    StepEffects,
    WaitEvent,
)
from tripwright.engine.records import EventRecord, JournalKind, RunRecord
from tripwright.engine.retry import RetryPolicy
from tripwright.engine.summary import Position
from tripwright.errors import ConfigurationError, UnknownEventError
from tripwright.flows.statechart.events import Event, matches
from tripwright.flows.statechart.interpreter import Interpreter
from tripwright.flows.statechart.invokers import InvokeHost, Invoker, Invokers, Stale
from tripwright.flows.statechart.model import Statechart
from tripwright.flows.statechart.outputs import (
    DelayedSend,
    ErrorEntry,
    InvokeCancel,
    InvokeForward,
    InvokeRequest,
    LogEntry,
    Macrostep,
    OutgoingEvent,
    SendCancel,
)
from tripwright.flows.statechart.processors import OUTBOX, Processor

__all__ = [
    "CONFIGURATION_KEY",
    "MACROSTEP",
    "SNAPSHOT_KEY",
    "StatechartFlow",
    "configuration_of",
    "send_event",
]

#: The engine step every macrostep runs in.
MACROSTEP = "macrostep"
#: ``run.context[SNAPSHOT_KEY]``: the interpreter's snapshot, logical time and host state.
SNAPSHOT_KEY = "statechart"
#: ``run.context[CONFIGURATION_KEY]``: the active state ids (document order).
CONFIGURATION_KEY = "configuration"


class StatechartFlow(Flow):
    """A statechart compiled onto the engine (one step; one checkpoint per macrostep).

    ``invokers`` serve invoke types other than child statecharts (see
    :mod:`.invokers`); ``processors`` deliver sends to targets outside the machine, by
    send type (see :mod:`.processors`; by default an outbox message on the target
    topic). ``retry`` is the macrostep's retry policy: a macrostep is deterministic, so
    by default it is not retried (a failure fails the run as it was before the
    macrostep; ``tripwright runs retry`` runs it again). ``macrosteps_per_checkpoint``
    caps the queued events taken as macrosteps of one checkpoint (see the module).
    """

    def __init__(
        self,
        chart: Statechart,
        *,
        invokers: Invokers | Mapping[str, Invoker] | None = None,
        processors: Mapping[str, Processor] | None = None,
        retry: RetryPolicy | None = None,
        description: str = "",
        macrosteps_per_checkpoint: int = 1,
    ) -> None:
        if macrosteps_per_checkpoint < 1:
            raise ConfigurationError(
                f"macrosteps_per_checkpoint must be at least 1, not {macrosteps_per_checkpoint}"
            )
        super().__init__(
            chart.name,
            str(chart.version),
            description=description,
            position=self.position_of,
        )
        self.chart = chart
        self.invokers = invokers if isinstance(invokers, Invokers) else Invokers(invokers)
        self.processors = dict(processors or {})
        self.macrosteps_per_checkpoint = macrosteps_per_checkpoint
        self._descriptors, self._open = _event_descriptors(chart)
        self._chart_digest = _digest(chart)
        self.add_step(MACROSTEP, self._macrostep, retry=retry or RetryPolicy(max_attempts=1))

    @property
    def definition_hash(self) -> str:
        """A digest of the chart (its structure and its callables' code) and the step."""
        if self._hash is None:
            body = json.dumps(
                {"flow": super().definition_hash, "chart": self._chart_digest}, sort_keys=True
            )
            self._hash = hashlib.sha256(body.encode()).hexdigest()
        return self._hash

    # -- events -------------------------------------------------------------------------
    def accepts(self, name: str) -> bool:
        """Whether some transition of the chart (or of a child it invokes) could take an
        event called ``name``; platform events (``done.*``, ``error.*``) always can be sent."""
        return self._open or matches(self._descriptors, name)

    def check_event(self, name: str, *, run_id: str | None = None) -> None:
        """Raise :class:`UnknownEventError` unless :meth:`accepts` the event."""
        if not self.accepts(name):
            known = ", ".join(sorted(set(self._descriptors))) or "none"
            raise UnknownEventError(
                f"no transition of statechart {self.chart.name!r} takes event {name!r} "
                f"(its transitions take: {known})",
                event=name,
                run_id=run_id,
                flow=self.key,
            )

    # -- run control --------------------------------------------------------------------
    def position_of(self, run: RunRecord) -> Position:
        """A run's active configuration, as run control shows it."""
        box = run.context.get(SNAPSHOT_KEY) or {}
        snapshot = box.get("snapshot") or {}
        details: dict[str, Any] = {
            "pending_sends": sorted(p["sendid"] for p in snapshot.get("delayed", ())),
            "datamodel": snapshot.get("datamodel", {}),
        }
        if box.get("inbox"):
            details["queued"] = [e["name"] for e in box["inbox"]]
        return Position("statechart", tuple(configuration_of(run)), details)

    # -- the step -----------------------------------------------------------------------
    async def _macrostep(self, ctx: StepContext) -> Outcome:
        box: dict[str, Any] | None = ctx.context.get(SNAPSHOT_KEY)
        clock = [ctx.now if box is None else float(box["clock"])]
        stimulus: dict[str, Any] = {}
        run = _Session(InvokeHost(ctx), clock)
        if box is None:
            run.machine = Interpreter(self.chart, session_id=ctx.run_id, now=lambda: clock[0])
            step: Macrostep | None = run.machine.start(_start_data(ctx.input, ctx.run_id))
        else:
            run.machine = Interpreter.restore(
                self.chart, box["snapshot"], now=lambda: clock[0], session_id=ctx.run_id
            )
            run.timers = {p["sendid"] for p in run.machine.pending_sends}
            run.inbox = list(box.get("inbox", ()))
            run.services = dict(box.get("services", {}))
            step = self._take(run, ctx.event, stimulus)
        self._apply(ctx, run, step, stimulus)
        if self.macrosteps_per_checkpoint > 1:
            self._receive_queued(ctx, run)
        context = _context_of(run)
        machine = run.machine
        if machine.terminated:
            for sendid in sorted(run.timers):  # whatever the session left pending dies with it
                ctx.cancel_timer(sendid)
        ctx.context.update(context)
        outcome: Outcome
        if machine.terminated:
            outcome = Complete(machine.donedata)
        elif run.inbox or machine.pending:
            outcome = Goto(MACROSTEP)
        else:
            outcome = WaitEvent(then=MACROSTEP)
        machine.release()  # freed now, not by the garbage collector
        return outcome

    def _apply(
        self, ctx: StepContext, run: _Session, step: Macrostep | None, stimulus: dict[str, Any]
    ) -> None:
        """Journal a macrostep and turn its outputs into the checkpoint's effects."""
        machine = run.machine
        if step is None:
            # A timer whose send was cancelled or already fired, or a reply of an
            # invocation that is over: nothing to do.
            ctx.record(
                JournalKind.TRANSITION,
                ignored=True,
                reason=stimulus.pop(
                    "reason", "nothing to process (a cancelled or fired send's timer)"
                ),
                event=stimulus,
                source=list(machine.configuration),
                target=list(machine.configuration),
                clock=run.clock[0],
            )
            return
        _journal(ctx, step, stimulus, run.clock[0])
        self._effects(ctx, run.host, step, run.timers, run.services)
        run.inbox.extend(e.to_json() for e in run.host.take_deliveries())

    def _receive_queued(self, ctx: StepContext, run: _Session) -> None:
        """Take the events already queued for the run as further macrosteps of this
        checkpoint (each journaled as its own), while the machine waits for events, its
        macrosteps had no effect besides their journal entries, and the cap allows.

        The context after each is encoded (which checks it): a macrostep that fails, or
        leaves data that cannot be stored, is undone and left for the next step, where it
        is the first macrostep and its failure fails the run as it was before it.
        """
        effects = ctx.effects
        limit = min(len(ctx.queued), self.macrosteps_per_checkpoint - 1)
        if limit <= 0 or not run.waiting or not _journal_only(effects):
            return
        before = codec.dumps(_context_of(run), what="run context", run_id=ctx.run_id)
        while len(effects.received) < limit and run.waiting and _journal_only(effects):
            marks = _marks(effects)
            try:
                record = ctx.queued[len(effects.received)]
                ctx.receive(record)
                stimulus: dict[str, Any] = {}
                self._apply(ctx, run, self._take(run, record, stimulus), stimulus)
                after = codec.dumps(_context_of(run), what="run context", run_id=ctx.run_id)
            except Exception:
                _undo(effects, marks)
                run.restore(self.chart, ctx.run_id, codec.loads(before))
                return
            before = after

    def _take(
        self, run: _Session, record: EventRecord | None, stimulus: dict[str, Any]
    ) -> Macrostep | None:
        """Process the next stimulus: a delivered engine event (an invoker's reply
        translated by it), else the host's queue, else the session's own queue."""
        machine, host, inbox, clock, timers = (
            run.machine,
            run.host,
            run.inbox,
            run.clock,
            run.timers,
        )
        if record is not None:
            clock[0] = max(clock[0], record.visible_at)
            if record.kind == "timer":
                sendid = record.timer_name or record.name
                stimulus.update(name=record.name, id=record.id, origin="timer", sendid=sendid)
                timers.discard(sendid)  # its store row is consumed with this macrostep
                return machine.fire(sendid)
            reply = self.invokers.reply(host, record)
            if reply is None:
                stimulus.update(name=record.name, id=record.id, origin="external")
                return machine.send(Event(record.name, record.payload, type="external"))
            stimulus.update(name=record.name, id=record.id, origin="invoke")
            if isinstance(reply, Stale):
                stimulus.update(reason=reply.reason)
                return None
            stimulus.update(name=reply.name, invokeid=reply.invokeid)
            return machine.send(reply)
        if inbox:
            event = Event.from_json(inbox.pop(0))
            stimulus.update(name=event.name, origin="invoke", invokeid=event.invokeid)
            return machine.send(event)
        step = machine.step()
        if step is not None and step.event is not None:
            stimulus.update(_describe_event(step.event))
        return step

    def _effects(
        self,
        ctx: StepContext,
        host: InvokeHost,
        step: Macrostep,
        timers: set[str],
        services: dict[str, str],
    ) -> None:
        """Turn the macrostep's outputs into the checkpoint's effects, in order.

        ``timers`` are the send ids with a stored timer; it is updated. A send set and
        cancelled within the macrostep never reaches the store; a send id reused while
        its earlier send is pending replaces that timer.
        """
        new: dict[str, DelayedSend] = {}
        for output in step.outputs:
            if isinstance(output, DelayedSend):
                if output.sendid in timers:
                    ctx.cancel_timer(output.sendid)
                    timers.discard(output.sendid)
                new.pop(output.sendid, None)
                new[output.sendid] = output
            elif isinstance(output, SendCancel):
                if new.pop(output.sendid, None) is None and output.sendid in timers:
                    ctx.cancel_timer(output.sendid)
                    timers.discard(output.sendid)
            elif isinstance(output, OutgoingEvent):
                self.processors.get(output.type or "", OUTBOX).send(host, output)
            elif isinstance(output, LogEntry):
                ctx.note("log", label=output.label, value=_storable(output.value))
            elif isinstance(output, ErrorEntry):
                ctx.note(
                    output.event,
                    error=output.message,
                    state=output.state,
                    line=output.line,
                    session=output.session,
                )
            elif isinstance(output, InvokeRequest):
                services[output.invokeid] = output.type
                self.invokers.get(output.type).start(host, output)
            elif isinstance(output, InvokeCancel):
                kind = services.pop(output.invokeid, None)
                if kind is not None:
                    self.invokers.get(kind).cancel(host, output)
            elif isinstance(output, InvokeForward):
                kind = services.get(output.invokeid)
                if kind is not None:
                    self.invokers.get(kind).forward(host, output)
        for send in new.values():
            ctx.set_timer(
                send.sendid,
                at=send.due,
                event=send.event.name,
                payload={"sendid": send.sendid, "session": send.session},
            )
            timers.add(send.sendid)


def configuration_of(run: RunRecord) -> list[str]:
    """The active state ids of a statechart run, as of its last checkpoint."""
    return list(run.context.get(CONFIGURATION_KEY) or ())


async def send_event(
    engine: Engine,
    run_id: str,
    name: str,
    data: Any = None,
    *,
    dedupe_key: str | None = None,
) -> int:
    """Send event ``name`` to a statechart run, refusing one its chart can never take.

    Raises :class:`UnknownEventError` for such a name, :class:`ConfigurationError` if
    the run's flow is not a statechart registered on ``engine``; otherwise queues the
    event like :meth:`Engine.send` (returns its id).
    """
    run = await engine.get(run_id)
    flow = engine.registry.get(run.flow_name, run.flow_version)
    if not isinstance(flow, StatechartFlow):
        raise ConfigurationError(
            f"{flow.key} is not a statechart", run_id=run_id, flow=run.flow_name
        )
    flow.check_event(name, run_id=run_id)
    return await engine.send(run_id, name, data, dedupe_key=dedupe_key)


# -- helpers ------------------------------------------------------------------------------


class _Session:
    """A machine being stepped, with its host's state (what the box keeps besides the
    snapshot): logical clock, send ids with a stored timer, host queue, services."""

    __slots__ = ("clock", "host", "inbox", "machine", "services", "timers")

    def __init__(self, host: InvokeHost, clock: list[float]) -> None:
        self.host = host
        self.clock = clock
        self.machine: Interpreter
        self.timers: set[str] = set()
        self.inbox: list[dict[str, Any]] = []
        self.services: dict[str, str] = {}

    @property
    def waiting(self) -> bool:
        """Whether the machine waits for an external event (nothing of its own to do)."""
        machine = self.machine
        return not (machine.terminated or self.inbox or machine.pending)

    def restore(self, chart: Statechart, run_id: str, context: dict[str, Any]) -> None:
        """Go back to the state ``context`` (see :func:`_context_of`) describes."""
        box = context[SNAPSHOT_KEY]
        self.clock[0] = float(box["clock"])
        clock = self.clock
        self.machine = Interpreter.restore(
            chart, box["snapshot"], now=lambda: clock[0], session_id=run_id
        )
        self.timers = {p["sendid"] for p in self.machine.pending_sends}
        self.inbox = list(box.get("inbox", ()))
        self.services = dict(box.get("services", {}))


def _context_of(run: _Session) -> dict[str, Any]:
    """The run context's statechart part for the session as it is."""
    machine = run.machine
    return {
        CONFIGURATION_KEY: list(machine.configuration),
        SNAPSHOT_KEY: {
            "snapshot": machine.compact_snapshot(),  # encoded with the context
            "clock": run.clock[0],
            **({"inbox": run.inbox} if run.inbox and not machine.terminated else {}),
            **({"services": run.services} if run.services else {}),
        },
    }


def _journal_only(effects: StepEffects) -> bool:
    """Whether a step's effects so far are journal entries and received events only."""
    return not (
        effects.outbox
        or effects.timers
        or effects.cancelled_timers
        or effects.children
        or effects.messages
        or effects.cancels
        or effects.dead_letters
    )


_EFFECTS = tuple(f.name for f in fields(StepEffects))


def _marks(effects: StepEffects) -> dict[str, int]:
    return {name: len(getattr(effects, name)) for name in _EFFECTS}


def _undo(effects: StepEffects, marks: dict[str, int]) -> None:
    """Drop what a step added to its effects since ``marks`` were taken."""
    for name, size in marks.items():
        del getattr(effects, name)[size:]


def _start_data(value: Any, run_id: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise ConfigurationError(
        "a statechart run's input must be a mapping of datamodel values (or nothing), "
        f"not {type(value).__name__}",
        run_id=run_id,
    )


def _journal(ctx: StepContext, step: Macrostep, stimulus: dict[str, Any], clock: float) -> None:
    """One ``transition`` entry per microstep (or one ``ignored`` entry)."""
    if step.ignored:
        _transition(
            ctx,
            ignored=True,
            event=stimulus or _describe_event(step.event),
            source=list(step.configuration),
            target=list(step.configuration),
            guards=[_guard(g) for g in step.rejected],
            clock=clock,
        )
        return
    for micro in step.microsteps:
        if micro.event is None:
            event = None
        elif micro.event is step.event and stimulus:
            event = stimulus
        else:
            event = _describe_event(micro.event)
        _transition(
            ctx,
            event=event,
            source=list(micro.source),
            target=list(micro.target),
            transitions=[
                {"source": t.source, "index": t.index, "targets": list(t.targets)}
                for t in micro.transitions
            ],
            guards=[_guard(g) for g in micro.guards],
            actions=list(micro.actions),
            clock=clock,
        )


def _transition(ctx: StepContext, **data: Any) -> None:
    """Journal a transition entry with the macrostep's checkpoint.

    Unlike ``ctx.record`` it does not encode the entry a second time to check it: it
    holds only state ids, event names, numbers and messages, and a value the store still
    refuses fails the run as it was before the macrostep.
    """
    ctx.effects.records.append((JournalKind.TRANSITION, data))


def _guard(g: Any) -> dict[str, Any]:
    out = {"state": g.state, "index": g.index, "outcome": g.outcome}
    if g.error is not None:
        out["error"] = g.error
    return out


def _describe_event(event: Event | None) -> dict[str, Any]:
    if event is None:
        return {}
    out: dict[str, Any] = {"name": event.name, "origin": event.origin or event.type}
    if event.sendid is not None:
        out["sendid"] = event.sendid
    if event.invokeid is not None:
        out["invokeid"] = event.invokeid
    return out


def _storable(value: Any) -> Any:
    """A logged value as JSON, or its text when it is not JSON."""
    try:
        codec.dumps(value)
    except Exception:
        return repr(value)
    return value


def _event_descriptors(chart: Statechart) -> tuple[tuple[str, ...], bool]:
    """Every event descriptor of the chart's transitions (and of inline child charts);
    and whether any event may matter (``*``, or autoforward to a host-run service)."""
    found: list[str] = []
    open_ = False
    for state in chart.walk():
        for transition in state.transitions:
            found.extend(transition.events)
        for invoke in state.invokes:
            if invoke.content is not None:
                child, child_open = _event_descriptors(invoke.content)
                found.extend(child)
                open_ = open_ or (invoke.autoforward and child_open)
            elif invoke.autoforward:
                open_ = True
    if "*" in found:
        open_ = True
    return tuple(dict.fromkeys(found)), open_


def _digest(chart: Statechart) -> str:
    """A stable digest of a chart: its data, and the code of its Python callables."""
    return hashlib.sha256("".join(_parts(chart)).encode()).hexdigest()


def _parts(value: Any) -> Iterator[str]:
    if is_dataclass(value) and not isinstance(value, type):
        yield f"<{type(value).__name__}"
        for f in fields(value):
            if not f.name.startswith("_"):
                yield f" {f.name}="
                yield from _parts(getattr(value, f.name))
        yield ">"
    elif isinstance(value, tuple | list):
        yield "["
        for item in value:
            yield from _parts(item)
            yield ","
        yield "]"
    elif isinstance(value, dict):
        yield json.dumps(value, sort_keys=True, default=repr)
    elif callable(value):
        yield _callable_digest(value)
    else:
        yield repr(value)


def _callable_digest(fn: Callable[..., object]) -> str:
    code = getattr(fn, "__code__", None)
    name = getattr(fn, "__qualname__", type(fn).__name__)
    body = hashlib.sha256(code.co_code).hexdigest()[:16] if code is not None else ""
    return f"{name}:{body}"
