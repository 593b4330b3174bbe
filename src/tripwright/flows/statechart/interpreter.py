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

Events a session sends to itself without a delay (and events from invoked child charts)
wait in its external queue: after each macrostep, while :attr:`Interpreter.pending` is
true, the host calls :meth:`Interpreter.step` to process the next one (each its own
macrostep, so each its own checkpoint).
"""

from __future__ import annotations

import builtins
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from tripwright.engine.codec import dumps
from tripwright.errors import InvalidRunStateError, StatechartError
from tripwright.flows.statechart.compiled import (
    CompiledChart,
    CState,
    CTransition,
    Plan,
    bits,
    compile_chart,
)
from tripwright.flows.statechart.context import ActionContext
from tripwright.flows.statechart.datamodel import RESERVED, is_json
from tripwright.flows.statechart.events import Event
from tripwright.flows.statechart.executable import (
    SCXML_TYPES,
    evaluate_payload,
    run_block,
)
from tripwright.flows.statechart.model import Data, Statechart
from tripwright.flows.statechart.outputs import (
    DelayedSend,
    ErrorEntry,
    GuardOutcome,
    LogEntry,
    Macrostep,
    Microstep,
    OutgoingEvent,
    Output,
    SendCancel,
)
from tripwright.flows.statechart.snapshot import FORMAT, PendingSend, Snapshot

__all__ = ["Interpreter"]

_SCXML_URI = "http://www.w3.org/TR/scxml/#SCXMLEventProcessor"
_NO_OUTPUTS: tuple[Output, ...] = ()


class Interpreter:
    """One session of a statechart. Not thread-safe; one macrostep at a time.

    ``now`` is the clock used to stamp delayed sends' due times (default: always 0.0,
    so ``due`` equals the delay). ``optimise=False`` runs the plain algorithm on every
    event, without the cached selections and plans (for tests that compare the two).
    """

    __slots__ = (
        "_config",
        "_ctx",
        "_delayed",
        "_done",
        "_donedata",
        "_event",
        "_external",
        "_helpers",
        "_history",
        "_initialized",
        "_internal",
        "_micro",
        "_now",
        "_ns",
        "_optimise",
        "_out",
        "_rejected",
        "_running",
        "_started",
        "_state",
        "_to_invoke",
        "chart",
        "ids",
        "session_id",
    )

    def __init__(
        self,
        chart: Statechart,
        *,
        session_id: str,
        now: Callable[[], float] | None = None,
        optimise: bool = True,
    ) -> None:
        self.chart: CompiledChart = compile_chart(chart)
        self._optimise = optimise
        self.session_id = session_id
        self._now = now
        self._config = 0
        self._running = False
        self._started = False
        self._done = False
        self._donedata: Any = None
        self._ns: dict[str, Any] | None = None
        self._helpers: dict[str, Any] | None = None
        self._internal: deque[Event] | None = None
        self._external: deque[Event] | None = None
        self._history: dict[int, int] | None = None
        self._delayed: dict[str, PendingSend] | None = None
        self._initialized: set[int] | None = None
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
        helpers = self._helpers or {}
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
        chart = self.chart
        if data or chart.script is not None or chart.has_data:
            self._init_datamodel(data)
        root = chart.states[0]
        assert root.initial is not None
        plan, _ = chart.build_plan(0, (root.initial,), {})
        self._microstep(plan, None, ())
        self._stabilise()
        return self._finish(None, ignored=False)

    def send(self, event: Event) -> Macrostep:
        """Process one external event as a whole macrostep.

        An event no transition accepts gives ``ignored=True``; a terminated machine
        ignores every event.
        """
        if not self._running:
            if not self._started:
                raise InvalidRunStateError(f"session {self.session_id!r} was not started")
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
            if self._invoked_any():
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
        if self._invoked_any():
            self._before_external(event)
        if found is None:
            ignored = True
        elif found.__class__ is Plan:
            ignored = False
            self._microstep(found, event, ())
        else:
            ignored = not self._take(found, event)
        self._stabilise()
        return self._finish(event, ignored=ignored)

    def _invoked_any(self) -> bool:
        return False

    def _before_external(self, event: Event) -> None:
        """Finalize and autoforward for invoked children (see :mod:`.invoke`)."""

    def step(self) -> Macrostep | None:
        """Process the next event of this session's external queue; ``None`` if empty."""
        if not self._external:
            return None
        return self.send(self._external.popleft())

    def fire(self, sendid: str) -> Macrostep | None:
        """A delayed send is due: deliver it. ``None`` if it was cancelled or fired already.

        An event for this session is processed at once (one macrostep); one for another
        target comes back as an output.
        """
        pending = self._delayed.pop(sendid, None) if self._delayed else None
        if pending is None or not self._running:
            return None
        event = Event.from_json(pending["event"])
        target, kind = pending["target"], pending["type"]
        if kind in SCXML_TYPES and target in (None, "#_external", self._own_address()):
            return self.send(event)
        self._begin()
        self._route(event, target, kind)
        self._stabilise()
        return self._finish(None, ignored=False)

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> Snapshot:
        """This session as pure JSON (raises ContextNotSerializableError naming a variable
        that holds a non-JSON value)."""
        data = self.datamodel
        for key, value in data.items():
            if not is_json(value):
                dumps(value, what=f"datamodel variable {key!r} of session {self.session_id!r}")
        states = self.chart.states
        return {
            "format": FORMAT,
            "chart": self.chart.name,
            "version": self.chart.chart.version,
            "session_id": self.session_id,
            "running": self._running,
            "started": self._started,
            "done": self._done,
            "donedata": self._donedata,
            "configuration": list(self.configuration),
            "datamodel": _copy_json(data),
            "internal": [e.to_json() for e in self._internal or ()],
            "external": [e.to_json() for e in self._external or ()],
            "history": {
                states[h].id: [states[i].id for i in bits(v)]
                for h, v in (self._history or {}).items()
            },
            "delayed": [PendingSend(**p) for p in (self._delayed or {}).values()],
            "invoked": {},
            "initialized": sorted(states[i].id for i in self._initialized or ()),
            "counters": {"ids": self.ids},
        }

    @classmethod
    def restore(
        cls,
        chart: Statechart,
        snapshot: Snapshot,
        *,
        now: Callable[[], float] | None = None,
        optimise: bool = True,
    ) -> Interpreter:
        """An interpreter that carries on exactly where ``snapshot`` was taken."""
        if snapshot.get("format") != FORMAT:
            raise StatechartError(f"unknown snapshot format {snapshot.get('format')!r}")
        if snapshot["chart"] != chart.name:
            raise StatechartError(
                f"snapshot of {snapshot['chart']!r} cannot restore chart {chart.name!r}"
            )
        self = cls(chart, session_id=snapshot["session_id"], now=now, optimise=optimise)
        compiled = self.chart
        self._started = snapshot["started"]
        self._running = snapshot["running"]
        self._done = bool(snapshot.get("done", False))
        self._donedata = snapshot.get("donedata")
        self._config = compiled.mask_of(snapshot["configuration"])
        self.ids = int(snapshot["counters"].get("ids", 0))
        if self._started:
            self._namespace_from(snapshot["datamodel"])
        if snapshot["internal"]:
            self._internal = deque(Event.from_json(e) for e in snapshot["internal"])
        if snapshot["external"]:
            self._external = deque(Event.from_json(e) for e in snapshot["external"])
        if snapshot["history"]:
            self._history = {
                compiled.by_id[h].index: compiled.mask_of(ids)
                for h, ids in snapshot["history"].items()
            }
        if snapshot["delayed"]:
            self._delayed = {p["sendid"]: PendingSend(**p) for p in snapshot["delayed"]}
        if snapshot["initialized"]:
            self._initialized = {compiled.by_id[i].index for i in snapshot["initialized"]}
        return self

    def _namespace_from(self, data: dict[str, Any]) -> None:
        chart = self.chart
        if not (data or chart.script is not None or chart.has_data):
            return
        ns = self.namespace()
        if chart.script is not None:
            self._run_global_script(ns)
        ns.update(_copy_json(data))

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
            self._emit(DelayedSend(sendid, event, delay, due, target, type, self.session_id))
        else:
            self._route(event, target, type)
        return sendid

    def cancel_send(self, sendid: str) -> None:
        """Cancel a pending delayed send (nothing happens if it is not pending)."""
        if self._delayed and self._delayed.pop(sendid, None) is not None:
            self._emit(SendCancel(sendid, self.session_id))

    def log(self, label: str | None, value: Any) -> None:
        """Emit a log entry."""
        self._emit(LogEntry(label, value, self.session_id))

    def execution_error(self, exc: BaseException, line: int | None, state: str | None) -> None:
        """Put ``error.execution`` on the internal queue for a failed element."""
        self._platform_error("error.execution", f"{type(exc).__name__}: {exc}", line, state)

    # ------------------------------------------------------------------ the algorithm

    def _begin(self) -> None:
        self._out = None
        self._micro = None
        self._rejected = None

    def _finish(self, event: Event | None, *, ignored: bool) -> Macrostep:
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
        )
        self._begin()
        return step

    def _emit(self, output: Output) -> None:
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
        self._emit(ErrorEntry(name, message, state, line, self.session_id))
        data = {"message": message, "state": state, "line": line}
        self._queue_internal(Event(name, data, type="platform"))

    def _own_address(self) -> str:
        return f"#_scxml_{self.session_id}"

    def _route(self, event: Event, target: str | None, kind: str | None) -> None:
        """Deliver an event that is due now to its target."""
        if kind not in SCXML_TYPES:
            self._emit(OutgoingEvent(target or "", kind, event, self.session_id))
        elif target is None or target in ("#_external", self._own_address()):
            self._queue_external(event)
        elif target == "#_internal":
            self._queue_internal(event)
        elif target.startswith("#_"):
            self._route_special(event, target)
        else:
            self._emit(OutgoingEvent(target, kind, event, self.session_id))

    def _route_special(self, event: Event, target: str) -> None:
        if target.startswith("#_scxml_"):
            self._emit(OutgoingEvent(target, _SCXML_URI, event, self.session_id))
            return
        self._platform_error(
            "error.communication",
            f"cannot send {event.name!r} to {target!r}: no such session",
            None,
            self._state,
        )

    def _take(self, groups: tuple[tuple[CTransition, ...], ...], event: Event | None) -> bool:
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
            if guards:
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
            return groups is not None and self._take(groups, event)
        found = self.chart.candidates(self._config, name)
        if found is None:
            return False
        if found.__class__ is Plan:
            self._microstep(found, event, ())
            return True
        return self._take(found, event)

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
                self._select_and_take(event.name, event)
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
                self._late_init(s)
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

    # ------------------------------------------------------------------ datamodel

    def _init_datamodel(self, data: Mapping[str, Any] | None) -> None:
        chart = self.chart
        ns = self.namespace()
        declared = list(chart.global_data)
        if not chart.late:
            for s in chart.states[1:]:
                declared.extend(s.datamodel)
        given = dict(data or {})
        for key, value in given.items():
            if key in RESERVED:
                raise StatechartError(f"cannot set the system variable {key!r}")
            if not is_json(value):
                dumps(value, what=f"start data {key!r}")
        for d in declared:
            self._bind_data(ns, d, given)
        for key, value in given.items():
            ns.setdefault(key, _copy_json(value))
        if chart.script is not None:
            self._state = None
            self._run_global_script(ns)

    def _run_global_script(self, ns: dict[str, Any]) -> None:
        script = self.chart.script
        assert script is not None
        before = dict(ns)
        try:
            exec(script, ns)
        except Exception as exc:
            line = self.chart.chart.script.line if self.chart.chart.script else None
            self.execution_error(exc, line, None)
        self._helpers = {
            k: v
            for k, v in ns.items()
            if k not in RESERVED and (k not in before or before[k] is not v) and not is_json(v)
        }

    def _bind_data(self, ns: dict[str, Any], d: Data, given: dict[str, Any]) -> None:
        if d.id in given:
            ns[d.id] = _copy_json(given[d.id])
            return
        try:
            if d.expr is not None:
                value = eval(self.chart.expr(d.expr, d.line), ns)
            else:
                value = _copy_json(d.value)
            if not is_json(value):
                raise TypeError(f"value of data {d.id!r} is not JSON data")
        except Exception as exc:
            ns[d.id] = None
            self.execution_error(exc, d.line, self._state)
            return
        ns[d.id] = value

    def _late_init(self, s: CState) -> None:
        initialized = self._initialized
        if initialized is None:
            initialized = self._initialized = set()
        if s.index in initialized:
            return
        initialized.add(s.index)
        ns = self.namespace()
        for d in s.datamodel:
            self._bind_data(ns, d, {})

    # ------------------------------------------------------------------ invocations

    def _start_invokes(self) -> None:
        states = self._to_invoke or []
        self._to_invoke = None
        for s in states:
            if self._config & s.mask:
                raise StatechartError(
                    "invoke is not supported by this interpreter yet",
                    element=s.id,
                    line=s.invokes[0].line,
                    flow=self.chart.name,
                )

    def _cancel_invokes(self, s: CState) -> None:
        return None


def _copy_json(value: Any) -> Any:
    if value is None or type(value) in (str, int, float, bool):
        return value
    if type(value) is list:
        return [_copy_json(v) for v in value]
    if type(value) is dict:
        return {k: _copy_json(v) for k, v in value.items()}
    return value
