"""What one macrostep did and what the host must act on: the interpreter's results.

The interpreter never sleeps, never performs I/O and never calls a host: every effect
outside its own sessions is an *output* record, in the order it happened, in the
:class:`Macrostep` returned by ``start``, ``send``, ``step`` and ``fire``. A host persists
the macrostep (one checkpoint) and then acts on the outputs:

* :class:`DelayedSend` -- schedule a timer; when it is due call ``fire(sendid)``.
* :class:`SendCancel` -- drop the timer of a delayed send.
* :class:`OutgoingEvent` -- deliver an event to a target outside the machine.
* :class:`InvokeRequest` / :class:`InvokeCancel` -- start or stop a service the host runs
  (any invoke type other than a child statechart); send back ``done.invoke.<invokeid>``
  or error events with ``invokeid`` set.
* :class:`InvokeForward` -- forward an event to such a service (``autoforward``).
* :class:`LogEntry` and :class:`ErrorEntry` -- journal them.

Every record carries the ``session`` it came from (a child statechart's session id when
it was produced inside an invoked child).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

from tripwright.flows.statechart.events import Event

__all__ = [
    "DelayedSend",
    "ErrorEntry",
    "GuardOutcome",
    "InvokeCancel",
    "InvokeForward",
    "InvokeRequest",
    "LogEntry",
    "Macrostep",
    "Microstep",
    "OutgoingEvent",
    "Output",
    "SendCancel",
    "TakenTransition",
]


@dataclass(frozen=True, slots=True)
class DelayedSend:
    """A send with a delay: the host calls ``fire(sendid, session=session)`` when due.

    ``due`` is the interpreter clock's time plus ``delay`` when the send ran.
    """

    sendid: str
    event: Event
    delay: float
    due: float
    target: str | None
    type: str | None
    session: str


@dataclass(frozen=True, slots=True)
class SendCancel:
    """A pending delayed send was cancelled (by ``cancel`` or its session ending)."""

    sendid: str
    session: str


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An event for a target the interpreter does not own (an I/O processor of the host)."""

    target: str
    type: str | None
    event: Event
    session: str


@dataclass(frozen=True, slots=True)
class InvokeRequest:
    """Start the service ``type``/``src`` with ``params``, known as ``invokeid``."""

    invokeid: str
    type: str
    src: str | None
    params: dict[str, Any]
    autoforward: bool
    session: str


@dataclass(frozen=True, slots=True)
class InvokeCancel:
    """Stop the host-run service ``invokeid`` (its invoking state was exited)."""

    invokeid: str
    session: str


@dataclass(frozen=True, slots=True)
class InvokeForward:
    """Forward ``event`` to the host-run service ``invokeid`` (it was invoked with autoforward)."""

    invokeid: str
    event: Event
    session: str


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A ``log`` element ran: its label and the value of its expression."""

    label: str | None
    value: Any
    session: str


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """An error event was raised (``error.execution``, ``error.communication``).

    ``message`` says what failed, ``state`` the state whose content or transition it was
    in and ``line`` the element's source line, when known.
    """

    event: str
    message: str
    state: str | None
    line: int | None
    session: str


Output: TypeAlias = (
    DelayedSend
    | SendCancel
    | OutgoingEvent
    | InvokeRequest
    | InvokeCancel
    | InvokeForward
    | LogEntry
    | ErrorEntry
)


@dataclass(frozen=True, slots=True)
class GuardOutcome:
    """A condition evaluated while selecting transitions: ``transitions[index]`` of ``state``.

    ``error`` is set when evaluating it failed (the condition then counts as false).
    """

    state: str
    index: int
    outcome: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TakenTransition:
    """A transition of a microstep: the ``index``-th transition of ``source``.

    ``index`` is ``-1`` for an initial transition (of a compound state or of the chart).
    """

    source: str
    index: int
    targets: tuple[str, ...]


class Microstep(NamedTuple):
    """One microstep: the transitions taken together and the configurations around them.

    ``event`` is ``None`` for eventless transitions and the initial entry. ``actions``
    lists the executable content the microstep ran, in order (exits, transitions, entries).
    (An immutable named tuple: built on every transition, it must be cheap.)
    """

    event: Event | None
    source: tuple[str, ...]
    transitions: tuple[TakenTransition, ...]
    guards: tuple[GuardOutcome, ...]
    target: tuple[str, ...]
    actions: tuple[str, ...]


class Macrostep(NamedTuple):
    """The outcome of one external stimulus (start, an event, a due timer).

    ``event`` is the external event processed (``None`` for ``start``). ``ignored`` is
    true when it enabled no transition (journal it as ignored: it is not an error).
    ``microsteps`` are the transitions taken, ``outputs`` the effects for the host in
    order, ``configuration`` the active states afterwards (document order). ``done`` is
    true when the machine reached a top-level final state in this macrostep; ``donedata``
    is that state's done data. ``rejected`` are the conditions evaluated for events that
    then enabled no transition (why an event was ignored). ``children`` are the
    macrosteps invoked child charts ran during the call (their outputs are already part of
    ``outputs``). (An immutable named tuple.)
    """

    event: Event | None
    microsteps: tuple[Microstep, ...]
    outputs: tuple[Output, ...]
    configuration: tuple[str, ...]
    ignored: bool = False
    done: bool = False
    donedata: Any = None
    rejected: tuple[GuardOutcome, ...] = ()
    children: tuple[Macrostep, ...] = ()

    @property
    def delayed_sends(self) -> tuple[DelayedSend, ...]:
        """Timers to schedule."""
        return tuple(o for o in self.outputs if isinstance(o, DelayedSend))

    @property
    def cancels(self) -> tuple[SendCancel, ...]:
        """Timers to drop."""
        return tuple(o for o in self.outputs if isinstance(o, SendCancel))

    @property
    def outgoing(self) -> tuple[OutgoingEvent, ...]:
        """Events for targets outside the machine."""
        return tuple(o for o in self.outputs if isinstance(o, OutgoingEvent))

    @property
    def logs(self) -> tuple[LogEntry, ...]:
        """Log entries."""
        return tuple(o for o in self.outputs if isinstance(o, LogEntry))

    @property
    def errors(self) -> tuple[ErrorEntry, ...]:
        """Error events raised."""
        return tuple(o for o in self.outputs if isinstance(o, ErrorEntry))

    @property
    def invoke_requests(self) -> tuple[InvokeRequest, ...]:
        """Host services to start."""
        return tuple(o for o in self.outputs if isinstance(o, InvokeRequest))

    @property
    def invoke_cancels(self) -> tuple[InvokeCancel, ...]:
        """Host services to stop."""
        return tuple(o for o in self.outputs if isinstance(o, InvokeCancel))
