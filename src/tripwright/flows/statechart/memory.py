"""In-memory execution on virtual time: a runner for tests and simulations.

:class:`MachineRunner` plays the host for one interpreter: it keeps the delayed sends on
a virtual timeline and fires them when time is advanced past their due time, drains the
session's own external queue after each macrostep, and records every macrostep.
:func:`simulate` feeds a list of timed external events to a runner until the machine
terminates, goes idle with nothing pending, or reaches a time limit::

    result = simulate(booking, [(0, "hold", None), (60, "pay", {"amount": 120})],
                      max_time=3600)
    result.configuration, result.terminated, result.log

Nothing here sleeps: hours of timers pass in microseconds, in a reproducible order (at
equal times, what was scheduled first happens first).
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tripwright.flows.statechart.events import Event
from tripwright.flows.statechart.interpreter import Interpreter
from tripwright.flows.statechart.model import Statechart
from tripwright.flows.statechart.outputs import (
    DelayedSend,
    LogEntry,
    Macrostep,
    Microstep,
    Output,
    SendCancel,
)

__all__ = ["MachineRunner", "SimulationResult", "simulate"]


class MachineRunner:
    """One statechart session run in memory on a virtual clock (time starts at ``start``).

    With ``restore_every_step`` the runner snapshots the interpreter after every
    macrostep, round-trips the snapshot through JSON and carries on with a restored
    interpreter: a run must not change because of it (that is what makes durable
    checkpoints sound). ``optimise=False`` runs the interpreter without its caches.
    ``max_microsteps`` replaces the chart's limit on one macrostep (a macrostep past it
    raises :class:`~tripwright.errors.StatechartLoopError`).
    """

    def __init__(
        self,
        chart: Statechart,
        *,
        session_id: str = "memory",
        start: float = 0.0,
        restore_every_step: bool = False,
        optimise: bool = True,
        max_microsteps: int | None = None,
    ) -> None:
        self.chart = chart
        self.optimise = optimise
        self.max_microsteps = max_microsteps
        self.time = start
        self.restore_every_step = restore_every_step
        self.interpreter = Interpreter(
            chart,
            session_id=session_id,
            now=self._now,
            optimise=optimise,
            max_microsteps=max_microsteps,
        )
        self.macrosteps: list[Macrostep] = []
        self.outputs: list[Output] = []
        self._timers: list[tuple[float, int, str, str]] = []
        self._active: dict[tuple[str, str], tuple[float, int]] = {}
        self._seq = itertools.count()

    def _now(self) -> float:
        return self.time

    # -- reading

    @property
    def configuration(self) -> tuple[str, ...]:
        """Active state ids, document order."""
        return self.interpreter.configuration

    @property
    def terminated(self) -> bool:
        """Whether the machine has stopped."""
        return self.interpreter.terminated

    @property
    def datamodel(self) -> dict[str, Any]:
        """The datamodel variables."""
        return self.interpreter.datamodel

    @property
    def log(self) -> list[LogEntry]:
        """Every log entry so far, in order."""
        return [o for o in self.outputs if isinstance(o, LogEntry)]

    @property
    def transitions(self) -> list[Microstep]:
        """Every microstep so far, in order."""
        return [m for step in self.macrosteps for m in step.microsteps]

    def next_due(self) -> float | None:
        """When the earliest pending delayed send is due."""
        self._drop_stale()
        return self._timers[0][0] if self._timers else None

    # -- driving

    def start(self, data: Mapping[str, Any] | None = None) -> list[Macrostep]:
        """Start the machine; the macrosteps it ran (its own queued events included)."""
        return self._drain(self.interpreter.start(data))

    def send(self, name: str, data: Any = None) -> list[Macrostep]:
        """Send an external event now; the macrosteps it caused."""
        return self.deliver(Event(name, data))

    def deliver(self, event: Event) -> list[Macrostep]:
        """Deliver an external event now; the macrosteps it caused."""
        return self._drain(self.interpreter.send(event))

    def advance(self, seconds: float) -> list[Macrostep]:
        """Move time forward, firing each delayed send that falls due on the way."""
        return self.advance_to(self.time + seconds)

    def advance_to(self, when: float) -> list[Macrostep]:
        """Move time forward to ``when``, firing due delayed sends in due order."""
        steps: list[Macrostep] = []
        while not self.interpreter.terminated:
            due = self.next_due()
            if due is None or due > when:
                break
            _, _, sendid, session = heapq.heappop(self._timers)
            self._active.pop((session, sendid), None)
            self.time = max(self.time, due)
            fired = self.interpreter.fire(sendid, session)
            if fired is not None:
                steps.extend(self._drain(fired))
        self.time = max(self.time, when)
        return steps

    def _drain(self, first: Macrostep) -> list[Macrostep]:
        steps = [self._record(first)]
        while self.interpreter.pending and not self.interpreter.terminated:
            step = self.interpreter.step()
            if step is None:
                break
            steps.append(self._record(step))
        return steps

    def _record(self, step: Macrostep) -> Macrostep:
        self.macrosteps.append(step)
        for output in step.outputs:
            self.outputs.append(output)
            if isinstance(output, DelayedSend):
                seq = next(self._seq)
                self._active[(output.session, output.sendid)] = (output.due, seq)
                heapq.heappush(self._timers, (output.due, seq, output.sendid, output.session))
            elif isinstance(output, SendCancel):
                self._active.pop((output.session, output.sendid), None)
        if self.restore_every_step:
            state = json.loads(json.dumps(self.interpreter.snapshot()))
            self.interpreter = Interpreter.restore(
                self.chart,
                state,
                now=self._now,
                optimise=self.optimise,
                max_microsteps=self.max_microsteps,
            )
        return step

    def _drop_stale(self) -> None:
        timers = self._timers
        while timers:
            due, seq, sendid, session = timers[0]
            if self._active.get((session, sendid)) == (due, seq):
                return
            heapq.heappop(timers)


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """How a simulation ended: the configuration, whether the machine terminated, its log,
    every microstep and the virtual time reached (seconds since the start)."""

    configuration: tuple[str, ...]
    terminated: bool
    log: tuple[LogEntry, ...]
    transitions: tuple[Microstep, ...]
    time: float
    outputs: tuple[Output, ...]
    datamodel: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The summary ``{"configuration", "terminated", "log"}`` plus the time."""
        return {
            "configuration": list(self.configuration),
            "terminated": self.terminated,
            "log": [{"label": e.label, "value": e.value} for e in self.log],
            "time": self.time,
        }


def simulate(
    chart: Statechart,
    events: Iterable[tuple[float, str, Any]] = (),
    *,
    max_time: float | None = None,
    data: Mapping[str, Any] | None = None,
    session_id: str = "simulation",
    max_microsteps: int | None = None,
) -> SimulationResult:
    """Run ``chart`` in memory, delivering ``events`` (``(at_seconds, name, data)``) and
    delayed sends in time order, until it terminates, has nothing left to do, or
    ``max_time`` is reached. Delayed sends due at an event's time fire before it.

    A macrostep past the microstep limit (``max_microsteps``, else the chart's) raises
    :class:`~tripwright.errors.StatechartLoopError`."""
    runner = MachineRunner(chart, session_id=session_id, max_microsteps=max_microsteps)
    runner.start(data)
    limited = False  # stopped by max_time with something still to come
    for at, name, payload in sorted(events, key=lambda e: e[0]):
        if runner.terminated:
            break
        if max_time is not None and at > max_time:
            limited = True
            break
        runner.advance_to(max(at, runner.time))
        if not runner.terminated:
            runner.send(name, payload)
    while not runner.terminated:
        due = runner.next_due()
        if due is None:
            break
        if max_time is not None and due > max_time:
            limited = True
            break
        runner.advance_to(due)
    if limited and max_time is not None and not runner.terminated:
        runner.time = max(runner.time, max_time)
    return SimulationResult(
        configuration=runner.configuration,
        terminated=runner.terminated,
        log=tuple(runner.log),
        transitions=tuple(runner.transitions),
        time=runner.time,
        outputs=tuple(runner.outputs),
        datamodel=runner.datamodel,
    )
