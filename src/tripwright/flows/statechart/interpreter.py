"""The interpreter: the W3C SCXML algorithm (Appendix D), one macrostep per call.

::

    machine = Interpreter(chart, session_id="trip-42")
    step = machine.start({"seats": 2})        # enter the initial configuration
    step = machine.send(Event("hold"))         # one external event, one macrostep
    state = machine.snapshot()                 # JSON: checkpoint it
    again = Interpreter.restore(chart, state)  # ...and carry on elsewhere, identically

Each call runs a whole macrostep: the transitions the event enables (chosen in document
order, conflicts resolved in favour of descendants), then every eventless transition and
internal event until the machine is stable, then the invocations of the states entered.
It never sleeps and never does I/O: delayed sends, events for outside targets and
invocations of host services come back as outputs in the :class:`~.outputs.Macrostep`
(see :mod:`.outputs`). Errors in content or expressions become ``error.execution``
events, never exceptions; only misuse of the API raises.

A macrostep is bounded: past ``max_microsteps`` steps (the chart's, else 1000) it stops
with :class:`~tripwright.errors.StatechartLoopError` and the session with it. Microsteps
count, and so do internal events no transition takes (a failing eventless guard loops
on those) and the macrosteps of invoked children run within it.

Events a session sends to itself without a delay (and events from invoked child charts)
wait in its external queue: after each macrostep, while :attr:`Interpreter.pending` is
true, the host calls :meth:`Interpreter.step` to process the next one (each its own
macrostep, so each its own checkpoint).
"""

from __future__ import annotations

import builtins
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from tripwright.errors import InvalidRunStateError, StatechartError, StatechartLoopError
from tripwright.flows.statechart.compiled import CompiledChart, CState, CTransition, compile_chart
from tripwright.flows.statechart.context import ActionContext
from tripwright.flows.statechart.datamodel import (
    RESERVED,
    init_datamodel,
    is_json,
    late_init,
)
from tripwright.flows.statechart.events import Event
from tripwright.flows.statechart.executable import (
    SCXML_TYPES,
    evaluate_payload,
    run_block,
)
from tripwright.flows.statechart.invoke import (
    Invocation,
    before_external,
    cancel_invokes,
    start_invokes,
)
from tripwright.flows.statechart.model import Statechart, check_limit
from tripwright.flows.statechart.outputs import (
    DelayedSend,
    ErrorEntry,
    GuardOutcome,
    InvokeCancel,
    LogEntry,
    Macrostep,
    Microstep,
    OutgoingEvent,
    Output,
    SendCancel,
)
from tripwright.flows.statechart.plans import Plan, bits
from tripwright.flows.statechart.snapshot import (
    PendingSend,
    Snapshot,
    check_snapshot,
    load_snapshot,
    take_compact,
    take_snapshot,
)

__all__ = ["DEFAULT_MAX_MICROSTEPS", "Interpreter"]

#: Steps one macrostep may take when neither the chart nor the interpreter sets a limit.
DEFAULT_MAX_MICROSTEPS = 1000
#: Transitions a loop error shows.
_RECENT = 5

_SCXML_URI = "http://www.w3.org/TR/scxml/#SCXMLEventProcessor"
_NO_OUTPUTS: tuple[Output, ...] = ()


class Interpreter:
    """One session of a statechart. Not thread-safe; one macrostep at a time.

    ``now`` is the clock used to stamp delayed sends' due times (default: always 0.0,
    so ``due`` equals the delay). ``optimise=False`` runs the plain algorithm on every
    event, without the cached selections and plans (for tests that compare the two).
    ``resolve`` maps an invoke's ``src`` to the child chart to run (see :mod:`.invoke`).
    ``max_microsteps`` replaces the chart's limit on the steps of one macrostep (children
    keep their own charts' limits).
    """

    __slots__ = (
        "_config",
        "_ctx",
        "_delayed",
        "_done",
        "_donedata",
        "_event",
        "_external",
        "_failure",
        "_history",
        "_internal",
        "_invoked",
        "_invokeid",
        "_limit",
        "_micro",
        "_nested",
        "_now",
        "_ns",
        "_optimise",
        "_out",
        "_parent",
        "_rejected",
        "_running",
        "_started",
        "_state",
        "_steps",
        "_stimulus",
        "_to_invoke",
        "chart",
        "helpers",
        "ids",
        "initialized",
        "resolve",
        "session_id",
    )

    def __init__(
        self,
        chart: Statechart,
        *,
        session_id: str,
        now: Callable[[], float] | None = None,
        optimise: bool = True,
        resolve: Callable[[str], Statechart] | None = None,
        max_microsteps: int | None = None,
    ) -> None:
        self.chart: CompiledChart = compile_chart(chart)
        if max_microsteps is not None:
            check_limit(max_microsteps, f"session {session_id!r}")
        else:
            max_microsteps = chart.max_microsteps or DEFAULT_MAX_MICROSTEPS
        self._limit = max_microsteps
        self._steps = 0
        self._stimulus = "starting"
        self._failure: StatechartLoopError | None = None
        self._optimise = optimise
        self.resolve = resolve
        self._invoked: dict[str, Invocation] | None = None
        self._parent: Interpreter | None = None
        self._invokeid: str | None = None
        self._nested: list[Macrostep] | None = None
        self.session_id = session_id
        self._now = now
        self._config = 0
        self._running = False
        self._started = False
        self._done = False
        self._donedata: Any = None
        self._ns: dict[str, Any] | None = None
        self.helpers: dict[str, Any] | None = None
        self._internal: deque[Event] | None = None
        self._external: deque[Event] | None = None
        self._history: dict[int, int] | None = None
        self._delayed: dict[str, PendingSend] | None = None
        self.initialized: set[int] | None = None
        self._to_invoke: list[CState] | None = None
        self._ctx: ActionContext | None = None
        self._event: Event | None = None
        self._out: list[Output] | None = None
        self._micro: list[Microstep] | None = None
        self._rejected: list[GuardOutcome] | None = None
        self._state: str | None = None
        self.ids = 0

    # ------------------------------------------------------------------ public API

    @property
    def configuration(self) -> tuple[str, ...]:
        """Active state ids in document order (after termination: the last ones)."""
        return self.chart.config_ids(self._config)

    @property
    def terminated(self) -> bool:
        """Whether the machine has stopped (it reached a top-level final state)."""
        return self._started and not self._running

    @property
    def done(self) -> bool:
        """Whether the machine stopped by reaching a top-level final state."""
        return self._done

    @property
    def donedata(self) -> Any:
        """The done data of the top-level final state reached, if any."""
        return self._donedata

    @property
    def datamodel(self) -> dict[str, Any]:
        """A copy of the datamodel variables (system variables and helpers left out)."""
        ns = self._ns
        if ns is None:
            return {}
        helpers = self.helpers or {}
        return {
            k: v
            for k, v in ns.items()
            if k not in RESERVED and not (k in helpers and helpers[k] is v)
        }

    @property
    def pending(self) -> bool:
        """Whether events wait in this session's external queue (call :meth:`step`)."""
        return bool(self._external)

    @property
    def clock(self) -> Callable[[], float] | None:
        """The clock stamping delayed sends (shared with invoked children)."""
        return self._now

    @property
    def config_mask(self) -> int:
        """The configuration as a bit mask of state indices (see :mod:`.compiled`)."""
        return self._config

    @property
    def pending_sends(self) -> tuple[PendingSend, ...]:
        """Delayed sends not yet fired or cancelled."""
        return tuple(self._delayed.values()) if self._delayed else ()

    def start(self, data: Mapping[str, Any] | None = None) -> Macrostep:
        """Initialise the datamodel (``data`` overrides or adds variables) and enter the
        initial configuration; returns the first macrostep."""
        if self._started:
            raise InvalidRunStateError(f"session {self.session_id!r} was already started")
        self._started = True
        self._running = True
        self._begin()
        self._stimulus = "starting"
        chart = self.chart
        if data or chart.script is not None or chart.has_data:
            init_datamodel(self, data)
        root = chart.states[0]
        assert root.initial is not None
        plan = chart.plan(0, (root.initial,), {})  # shared by every session of the chart
        if plan is None:
            plan, _ = chart.build_plan(0, (root.initial,), {})
        try:
            self._microstep(plan, None, ())
            self._stabilise()
            return self._finish(None, ignored=False)
        except StatechartLoopError as exc:
            raise self._stop(exc) from None

    def send(self, event: Event) -> Macrostep:
        """Process one external event as a whole macrostep.

        An event no transition accepts gives ``ignored=True``; a terminated machine
        ignores every event.
        """
        if not self._running:
            if not self._started:
                raise InvalidRunStateError(f"session {self.session_id!r} was not started")
            if self._failure is not None:
                raise InvalidRunStateError(
                    f"session {self.session_id!r} was stopped by a loop: {self._failure.message}"
                )
            return Macrostep(event, (), _NO_OUTPUTS, self.configuration, True)
        if event.sendid is not None and self._delayed:
            self._delayed.pop(event.sendid, None)
        self._event = event
        ns = self._ns
        if ns is not None:
            ns["_event"] = event
        chart = self.chart
        key = (self._config, event.name)
        if not self._optimise:
            return self._slow_send(event, chart.select(*key))
        found = chart.selections.get(key, chart)
        if found is chart:
            found = chart.candidates(*key)
        if found is None:
            # eventless transitions may depend on _event: they are tried after any event
            if self._invoked or event.invokeid is not None or chart.has_eventless:
                return self._slow_send(event, None)
            return Macrostep(event, (), _NO_OUTPUTS, chart.config_ids(self._config), True)
        if found.__class__ is Plan and found.fast:
            # The hot path: a cached plan with nothing to run but the configuration change.
            self._config = found.configuration
            micro = Microstep(
                event, found.source_ids, found.taken, (), found.target_ids, found.actions
            )
            return Macrostep(event, (micro,), _NO_OUTPUTS, found.target_ids)
        return self._slow_send(event, found)

    def _slow_send(self, event: Event, found: Any) -> Macrostep:
        self._begin()
        self._stimulus = f"event {event.name!r}"
        try:
            if (self._invoked or event.invokeid is not None) and not before_external(self, event):
                found = None  # from an invocation that was cancelled: ignored
            if found is None:
                ignored = True
            elif found.__class__ is Plan:
                ignored = False
                self._microstep(found, event, ())
            else:
                ignored = not self._take(found, event)
            self._stabilise()
            return self._finish(event, ignored=ignored)
        except StatechartLoopError as exc:
            raise self._stop(exc) from None

    def step(self) -> Macrostep | None:
        """Process the next event of this session's external queue; ``None`` if empty."""
        if not self._external:
            return None
        return self.send(self._external.popleft())

    def fire(self, sendid: str, session: str | None = None) -> Macrostep | None:
        """A delayed send is due: deliver it. ``None`` if it was cancelled or fired already.

        ``session`` is the :class:`DelayedSend`'s session (an invoked child's, or this
        one's). An event for this session is processed at once (one macrostep); one for
        another target comes back as an output.
        """
        if session is not None and session != self.session_id:
            child = self._find_child(session)
            if child is None or not self._running:
                return None
            step = child.fire(sendid)
            if step is None:
                return None
            self._begin()
            self._stimulus = f"delayed send {sendid!r} of session {session}"
            try:
                self.adopt(step)
                return self._finish(None, ignored=False)
            except StatechartLoopError as exc:
                raise self._stop(exc) from None
        pending = self._delayed.pop(sendid, None) if self._delayed else None
        if pending is None or not self._running:
            return None
        event = Event.from_json(pending["event"])
        target, kind = pending["target"], pending["type"]
        if kind in SCXML_TYPES and target in (None, "#_external", self._own_address()):
            return self.send(event)
        self._begin()
        self._stimulus = f"delayed send {sendid!r}"
        try:
            self._route(event, target, kind)
            self._stabilise()
            return self._finish(None, ignored=False)
        except StatechartLoopError as exc:
            raise self._stop(exc) from None

    def _find_child(self, session: str) -> Interpreter | None:
        for invocation in (self._invoked or {}).values():
            child = invocation.child
            if child is None:
                continue
            if child.session_id == session:
                return child
            found = child._find_child(session)
            if found is not None:
                return found
        return None

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> Snapshot:
        """This session as pure JSON (see :mod:`.snapshot`); raises
        ContextNotSerializableError naming a variable that holds a non-JSON value."""
        return take_snapshot(self)

    def release(self) -> None:
        """Let go of what ties this session to itself (its namespace and action context)
        and to its children, so that a host done with it frees it at once, without
        waiting for the garbage collector. The session cannot be used afterwards."""
        for invocation in (self._invoked or {}).values():
            if invocation.child is not None:
                invocation.child.release()
        self._invoked = None
        self._parent = None
        self._ns = None
        self.helpers = None
        self._ctx = None

    def compact_snapshot(self) -> dict[str, Any]:
        """This session in the compact form (see :func:`.snapshot.take_compact`): for a
        host that encodes it at once, and restores it with ``session_id=``."""
        return take_compact(self)

    @classmethod
    def restore(
        cls,
        chart: Statechart,
        snapshot: Snapshot | Mapping[str, Any],
        *,
        now: Callable[[], float] | None = None,
        optimise: bool = True,
        resolve: Callable[[str], Statechart] | None = None,
        max_microsteps: int | None = None,
        session_id: str | None = None,
    ) -> Interpreter:
        """An interpreter that carries on exactly where ``snapshot`` was taken (a compact
        snapshot names no session: ``session_id`` does)."""
        check_snapshot(chart, snapshot)
        sid = session_id if session_id is not None else snapshot.get("session_id")
        if not isinstance(sid, str):
            raise StatechartError("restoring a compact snapshot needs its session_id")
        self = cls(
            chart,
            session_id=sid,
            now=now,
            optimise=optimise,
            resolve=resolve,
            max_microsteps=max_microsteps,
        )
        load_snapshot(self, snapshot)
        return self

    # ------------------------------------------------------------------ invocations

    def invoked(self) -> dict[str, Invocation]:
        """The active invocations by invoke id (created on first use)."""
        invoked = self._invoked
        if invoked is None:
            invoked = self._invoked = {}
        return invoked

    def attach(self, parent: Interpreter, invokeid: str) -> None:
        """Make this session the child ``invokeid`` of ``parent``."""
        self._parent = parent
        self._invokeid = invokeid

    def adopt(self, step: Macrostep) -> None:
        """Take a child's macrostep into the one running: its outputs become ours."""
        nested = self._nested
        if nested is None:
            nested = self._nested = []
        nested.append(step)
        for output in step.outputs:
            self.emit(output)

    def enqueue(self, event: Event) -> None:
        """Put an event on this session's external queue (from a parent or a child)."""
        self._queue_external(event)

    def cancelled(self, parent: Interpreter) -> None:
        """This child's invoking state was exited: it ends, its timers and services too."""
        for sendid in list(self._delayed or ()):
            parent.emit(SendCancel(sendid, self.session_id))
        self._delayed = None
        for invocation in list((self._invoked or {}).values()):
            if invocation.child is None:
                parent.emit(InvokeCancel(invocation.invokeid, self.session_id))
            else:
                invocation.child.cancelled(parent)
        self._invoked = None
        self._running = False

    def _run_children(self) -> None:
        """Let invoked children process the events queued for them."""
        progressed = True
        while progressed and self._invoked:
            progressed = False
            for invokeid, invocation in list(self._invoked.items()):
                child = invocation.child
                if child is None or not child.pending or invokeid not in (self._invoked or {}):
                    continue
                self._count()
                step = child.step()
                if step is not None:
                    self.adopt(step)
                    progressed = True

    # ------------------------------------------------------------------ services for content

    @property
    def current_event(self) -> Event | None:
        """The event being processed."""
        return self._event

    @property
    def current_state(self) -> str | None:
        """The state whose content is running (for error reports)."""
        return self._state

    def namespace(self) -> dict[str, Any]:
        """The session's Python namespace (created on first use)."""
        ns = self._ns
        if ns is None:
            ns = self._ns = {
                "__builtins__": builtins,
                "_sessionid": self.session_id,
                "_name": self.chart.name,
                "_ioprocessors": {"scxml": {"location": self._own_address()}},
                "In": self.is_active,
            }
            if self._event is not None:
                ns["_event"] = self._event
        return ns

    def data_names(self) -> list[str]:
        """Names of the datamodel variables."""
        return list(self.datamodel)

    def context(self) -> ActionContext:
        """The context given to Python guards and actions (one per session)."""
        ctx = self._ctx
        if ctx is None:
            ctx = self._ctx = ActionContext(self)
        return ctx

    def is_active(self, state_id: str) -> bool:
        """``In(state_id)``: whether the state is in the configuration."""
        s = self.chart.by_id.get(state_id)
        return s is not None and bool(self._config & s.mask)

    def check_value(self, name: str, value: Any) -> None:
        """Refuse a non-JSON value for a datamodel variable."""
        if name in RESERVED:
            raise NameError(f"{name!r} is a system variable")
        if not is_json(value):
            raise TypeError(f"value for {name!r} is not JSON data: {type(value).__name__}")

    def new_sendid(self) -> str:
        """A send id unique within this session."""
        self.ids += 1
        return f"{self.session_id}.send.{self.ids}"

    def raise_event(self, name: str, data: Any) -> None:
        """Put an internal event on the internal queue."""
        if not is_json(data):
            raise TypeError(f"data of event {name!r} is not JSON data")
        self._queue_internal(Event(name, data, type="internal"))

    def send_event(
        self,
        name: str,
        data: Any,
        *,
        delay: float,
        target: str | None,
        type: str | None,
        sendid: str | None,
    ) -> str:
        """Send an event now or after ``delay`` seconds; returns its send id."""
        if not is_json(data):
            raise TypeError(f"data of event {name!r} is not JSON data")
        explicit = sendid
        if sendid is None:
            sendid = self.new_sendid()
        event = Event(
            name,
            data,
            type="external",
            sendid=explicit,
            origin=self._own_address(),
            origintype=_SCXML_URI,
        )
        if delay > 0:
            delayed = self._delayed
            if delayed is None:
                delayed = self._delayed = {}
            due = (self._now() if self._now is not None else 0.0) + delay
            delayed[sendid] = PendingSend(
                sendid=sendid, event=event.to_json(), target=target, type=type, due=due
            )
            self.emit(DelayedSend(sendid, event, delay, due, target, type, self.session_id))
        else:
            self._route(event, target, type)
        return sendid

    def cancel_send(self, sendid: str) -> None:
        """Cancel a pending delayed send (nothing happens if it is not pending)."""
        if self._delayed and self._delayed.pop(sendid, None) is not None:
            self.emit(SendCancel(sendid, self.session_id))

    def log(self, label: str | None, value: Any) -> None:
        """Emit a log entry."""
        self.emit(LogEntry(label, value, self.session_id))

    def execution_error(self, exc: BaseException, line: int | None, state: str | None) -> None:
        """Put ``error.execution`` on the internal queue for a failed element."""
        self._platform_error("error.execution", f"{type(exc).__name__}: {exc}", line, state)

    # ------------------------------------------------------------------ the algorithm

    def _begin(self) -> None:
        self._out = None
        self._micro = None
        self._rejected = None
        self._nested = None
        self._steps = 0

    def _count(self) -> None:
        """One more step of the macrostep running; past the limit it is a loop."""
        self._steps += 1
        if self._steps > self._limit:
            raise self._loop_error()

    def _loop_error(self) -> StatechartLoopError:
        recent = tuple(_describe(self.chart, m) for m in (self._micro or ())[-_RECENT:])
        errors = [o for o in self._out or () if isinstance(o, ErrorEntry)]
        event = self._event
        stimulus = self._stimulus
        if event is not None and event.type in ("internal", "platform"):
            stimulus += f", then internal event {event.name!r}"
        return StatechartLoopError(
            chart=self.chart.name,
            session=self.session_id,
            configuration=self.configuration,
            limit=self._limit,
            stimulus=stimulus,
            recent=recent,
            last_error=errors[-1].message if errors else None,
        )

    def _stop(self, error: StatechartLoopError) -> StatechartLoopError:
        """The session stops where the loop left it: it refuses further events."""
        self._running = False
        self._failure = error
        self._internal = None
        self._begin()
        return error

    def _finish(self, event: Event | None, *, ignored: bool) -> Macrostep:
        if self._invoked:
            self._run_children()
        step = Macrostep(
            event,
            tuple(self._micro) if self._micro else (),
            tuple(self._out) if self._out else _NO_OUTPUTS,
            self.configuration,
            ignored,
            # Once done, a machine runs no further macrostep: done is reported once.
            self._done,
            self._donedata if self._done else None,
            tuple(self._rejected) if self._rejected else (),
            tuple(self._nested) if self._nested else (),
        )
        self._begin()
        return step

    def emit(self, output: Output) -> None:
        """Add an output to the macrostep running."""
        out = self._out
        if out is None:
            out = self._out = []
        out.append(output)

    def _queue_internal(self, event: Event) -> None:
        internal = self._internal
        if internal is None:
            internal = self._internal = deque()
        internal.append(event)

    def _queue_external(self, event: Event) -> None:
        external = self._external
        if external is None:
            external = self._external = deque()
        external.append(event)

    def _platform_error(self, name: str, message: str, line: int | None, state: str | None) -> None:
        self.emit(ErrorEntry(name, message, state, line, self.session_id))
        data = {"message": message, "state": state, "line": line}
        self._queue_internal(Event(name, data, type="platform"))

    def _own_address(self) -> str:
        return f"#_scxml_{self.session_id}"

    def _route(self, event: Event, target: str | None, kind: str | None) -> None:
        """Deliver an event that is due now to its target."""
        if kind not in SCXML_TYPES:
            self.emit(OutgoingEvent(target or "", kind, event, self.session_id))
        elif target is None or target in ("#_external", self._own_address()):
            self._queue_external(event)
        elif target == "#_internal":
            self._queue_internal(event)
        elif target.startswith("#_"):
            self._route_special(event, target)
        else:
            self.emit(OutgoingEvent(target, kind, event, self.session_id))

    def _route_special(self, event: Event, target: str) -> None:
        if target.startswith("#_scxml_"):
            self.emit(OutgoingEvent(target, _SCXML_URI, event, self.session_id))
            return
        if target == "#_parent":
            if self._parent is not None:
                self._parent.enqueue(replace(event, invokeid=self._invokeid))
                return
        else:
            invocation = (self._invoked or {}).get(target[2:])
            if invocation is not None:
                if invocation.child is not None:
                    invocation.child.enqueue(event)
                else:
                    self.emit(OutgoingEvent(target, None, event, self.session_id))
                return
        self._platform_error(
            "error.communication",
            f"cannot send {event.name!r} to {target!r}: no such session",
            None,
            self._state,
        )

    def _take(
        self,
        groups: tuple[tuple[CTransition, ...], ...],
        event: Event | None,
        eventless: bool = False,
    ) -> bool:
        """Evaluate the candidates' conditions, then run the microstep; False if none."""
        chosen: list[CTransition] = []
        guards: list[GuardOutcome] = []
        for group in groups:
            for t in group:
                ok = True if t.cond is None else self._guard(t, guards)
                if ok:
                    if t not in chosen:
                        chosen.append(t)
                    break
        if not chosen:
            if guards and not eventless:
                if self._rejected is None:
                    self._rejected = guards
                else:
                    self._rejected.extend(guards)
            return False
        chart = self.chart
        key = tuple(chosen)
        plan = chart.plans.get((self._config, key)) if self._optimise else None
        if not self._optimise:
            plan, _ = chart.build_plan(self._config, key, self._history or {})
        elif plan is None:
            plan = chart.plan(self._config, key, self._history or {})
            if plan is None:
                plan, _ = chart.build_plan(self._config, key, self._history or {})
        self._microstep(plan, event, tuple(guards))
        return True

    def _guard(self, t: CTransition, guards: list[GuardOutcome]) -> bool:
        try:
            if t.cond_callable:
                ok = bool(t.cond(self.context()))  # type: ignore[misc,operator]
            else:
                ok = bool(eval(t.cond, self.namespace()))  # type: ignore[arg-type]
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            guards.append(GuardOutcome(t.taken.source, t.index, False, message))
            self._platform_error("error.execution", message, t.line, t.taken.source)
            return False
        guards.append(t.guard_true if ok else t.guard_false)
        return ok

    def _select_and_take(self, name: str | None, event: Event | None) -> bool:
        if not self._optimise:
            groups = self.chart.select(self._config, name)
            return groups is not None and self._take(groups, event, name is None)
        found = self.chart.candidates(self._config, name)
        if found is None:
            return False
        if found.__class__ is Plan:
            self._microstep(found, event, ())
            return True
        return self._take(found, event, name is None)

    def _stabilise(self) -> None:
        """Eventless transitions and the internal queue until stable, then invokes."""
        eventless = self.chart.has_eventless
        while self._alive():
            while self._alive():
                if eventless and self._select_and_take(None, self._event):
                    continue
                internal = self._internal
                if not internal:
                    break
                event = internal.popleft()
                self._event = event
                if self._ns is not None:
                    self._ns["_event"] = event
                if not self._select_and_take(event.name, event):
                    self._count()  # an event no transition takes still is a step
            if not self._alive():
                break
            if self._to_invoke:
                self._start_invokes()
            if not self._internal:
                break
        if not self._alive():
            self._exit_interpreter()

    def _alive(self) -> bool:
        # a method, not the attribute: content run by the loop may stop the machine
        return self._running

    def _microstep(self, plan: Plan, event: Event | None, guards: tuple[GuardOutcome, ...]) -> None:
        self._steps += 1
        if self._steps > self._limit:
            raise self._loop_error()
        micro = Microstep(event, plan.source_ids, plan.taken, guards, plan.target_ids, plan.actions)
        if self._micro is None:
            self._micro = [micro]
        else:
            self._micro.append(micro)
        if plan.simple and self._optimise:
            self._config = plan.configuration
            return
        if plan.history:
            history = self._history
            if history is None:
                history = self._history = {}
            for h, value in plan.history:
                history[h] = value
        for s in plan.exits:
            self._state = s.id
            for block in s.on_exit:
                run_block(self, block, s.id)
            if s.invokes:
                self._cancel_invokes(s)
            self._config &= ~s.mask
        for t in plan.transitions:
            if t.actions:
                self._state = t.taken.source or None
                run_block(self, t.actions, self._state)
        for e in plan.entries:
            s = e.state
            self._state = s.id
            self._config |= s.mask
            if s.invokes:
                if self._to_invoke is None:
                    self._to_invoke = []
                self._to_invoke.append(s)
            if self.chart.late and s.datamodel:
                late_init(self, s)
            for block in s.on_entry:
                run_block(self, block, s.id)
            if e.default_initial is not None and e.default_initial.actions:
                run_block(self, e.default_initial.actions, s.id)
            if e.history_content:
                run_block(self, e.history_content, s.id)
            if s.is_final:
                if e.stops:
                    self._running = False
                    self._done = True
                    self._donedata = self._done_data(s)
                for name, final in e.done_events:
                    data = self._done_data(final) if final is not None else None
                    self._queue_internal(Event(name, data, type="platform"))
        self._state = None
        self._config = plan.configuration

    def _done_data(self, s: CState) -> Any:
        model = s.model
        if model is None or model.donedata is None:
            return None
        try:
            return evaluate_payload(self, model.donedata.params, model.donedata.content)
        except Exception as exc:
            self.execution_error(exc, model.donedata.line, s.id)
            return None

    def _exit_interpreter(self) -> None:
        """Run the exit content of every active state (innermost first) at the end."""
        final = self._config
        for i in sorted(bits(final), reverse=True):
            s = self.chart.states[i]
            self._state = s.id
            for block in s.on_exit:
                run_block(self, block, s.id)
            if s.invokes:
                self._cancel_invokes(s)
        self._state = None
        if self._delayed:
            for sendid in list(self._delayed):
                self.cancel_send(sendid)
        self._internal = None
        # The configuration the machine ended in stays readable.
        self._config = final
        if self._parent is not None and self._done:
            done = Event(
                f"done.invoke.{self._invokeid}",
                self._donedata,
                invokeid=self._invokeid,
                origin=self._own_address(),
                origintype=_SCXML_URI,
            )
            self._parent.enqueue(done)

    # ------------------------------------------------------------------ datamodel

    def _start_invokes(self) -> None:
        states = self._to_invoke or []
        self._to_invoke = None
        start_invokes(self, states)

    def _cancel_invokes(self, s: CState) -> None:
        if self._invoked:
            cancel_invokes(self, s)


def _describe(chart: CompiledChart, micro: Microstep) -> str:
    """A microstep as a loop error shows it: ``a -> b on 'e'`` or ``a -> b (eventless)``."""
    moves = []
    eventless = True
    for t in micro.transitions:
        moves.append(
            f"{t.source or '(initial)'} -> {', '.join(t.targets)}"
            if t.targets
            else f"{t.source} (targetless)"
        )
        source = chart.by_id.get(t.source)
        if t.index >= 0 and source is not None and source.transitions[t.index].events:
            eventless = False
    if eventless or micro.event is None:
        return " + ".join(moves) + " (eventless)"
    return " + ".join(moves) + f" on {micro.event.name!r}"
