"""The host side of ``invoke`` for services other than child statecharts.

Child statecharts run inside their parent's interpreter (and so inside its snapshot).
Any other invoke type (a saga, an HTTP service, ...) is the host's job: the interpreter
emits :class:`~.outputs.InvokeRequest`, :class:`~.outputs.InvokeCancel` and
:class:`~.outputs.InvokeForward` outputs, and the durable host hands each to the
:class:`Invoker` registered for its type. An invoker acts through an :class:`InvokeHost`:
whatever it does (outbox messages, timers, journal entries) commits with the macrostep
that asked for it, and the events it delivers back (``done.invoke.<id>``, errors) are
processed by the machine as their own macrosteps, in order. A service that answers
later, in another checkpoint (a child run ending, say), names the engine events that
carry its answers in :attr:`Invoker.replies`; :meth:`Invoker.reply` turns each into the
machine's event, or into :class:`Stale` when the invocation it answers is over::

    class Quote(Invoker):
        def start(self, host, request):
            host.publish("quotes", "quote.requested", request.params)

    flow = StatechartFlow(chart, invokers={"quote": Quote()})

An invoke of a type no invoker is registered for is answered with ``error.execution``
(as the recommendation asks of a platform that cannot start the service).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from tripwright.engine.flow import StepContext
from tripwright.engine.records import EventRecord
from tripwright.flows.statechart.events import Event
from tripwright.flows.statechart.outputs import InvokeCancel, InvokeForward, InvokeRequest

__all__ = ["InvokeHost", "Invoker", "Invokers", "Stale"]


@dataclass(frozen=True, slots=True)
class Stale:
    """A reply the machine must not see (its invocation is over), and why; it is
    journaled as an ignored event."""

    reason: str


class InvokeHost:
    """What an invoker may do while a macrostep is being committed."""

    __slots__ = ("_ctx", "_deliveries")

    def __init__(self, ctx: StepContext) -> None:
        self._ctx = ctx
        self._deliveries: list[Event] = []

    @property
    def run_id(self) -> str:
        """The machine's run."""
        return self._ctx.run_id

    @property
    def correlation_id(self) -> str:
        """The run's correlation id."""
        return self._ctx.correlation_id

    @property
    def idempotency_key(self) -> str:
        """The macrostep's idempotency key (stable across crashes and retries)."""
        return self._ctx.idempotency_key

    @property
    def step_context(self) -> StepContext:
        """The engine step committing the macrostep (timers, outbox, journal)."""
        return self._ctx

    def publish(self, topic: str, type: str, data: Any, *, subject: str | None = None) -> str:
        """Queue an outbox message, committed with the macrostep."""
        return self._ctx.publish(topic, type, data, subject=subject)

    def deliver(self, name: str, data: Any = None, *, invokeid: str | None = None) -> None:
        """Queue an event back to the machine (processed after this macrostep, in order)."""
        self._deliveries.append(Event(name, data, type="external", invokeid=invokeid))

    def take_deliveries(self) -> list[Event]:
        """The events delivered so far (emptied)."""
        taken, self._deliveries = self._deliveries, []
        return taken


class Invoker:
    """Runs one invoke type for statechart runs; override what the service supports.

    The defaults refuse to start (the machine gets ``error.execution``) and ignore
    cancels and forwarded events.
    """

    #: Names of the engine events that carry this invoker's replies to the machine.
    replies: ClassVar[tuple[str, ...]] = ()

    def start(self, host: InvokeHost, request: InvokeRequest) -> None:
        """Start the service for ``request`` (reply later with ``done.invoke.<id>``)."""
        host.deliver(
            "error.execution",
            {"message": f"invoke type {request.type!r} cannot be started", "type": request.type},
            invokeid=request.invokeid,
        )

    def cancel(self, host: InvokeHost, cancel: InvokeCancel) -> None:
        """Stop the service (its invoking state was exited)."""

    def forward(self, host: InvokeHost, forward: InvokeForward) -> None:
        """Forward an event to the service (it was invoked with ``autoforward``)."""

    def reply(self, host: InvokeHost, record: EventRecord) -> Event | Stale:
        """The machine's event for an engine event named in :attr:`replies`."""
        return Event(record.name, record.payload, type="external")


class Invokers:
    """Invokers by invoke type; a type nobody registered gets :class:`Invoker`'s refusal."""

    __slots__ = ("_by_reply", "_by_type", "_refuse")

    def __init__(self, by_type: Mapping[str, Invoker] | None = None) -> None:
        self._by_type: dict[str, Invoker] = {}
        self._by_reply: dict[str, Invoker] = {}
        self._refuse = Invoker()
        for type, invoker in (by_type or {}).items():
            self.register(type, invoker)

    def register(self, type: str, invoker: Invoker) -> None:
        """Serve invokes of ``type`` with ``invoker``."""
        self._by_type[type] = invoker
        for name in invoker.replies:
            self._by_reply[name] = invoker

    def get(self, type: str) -> Invoker:
        """The invoker for ``type`` (the refusing default if none is registered)."""
        return self._by_type.get(type, self._refuse)

    def reply(self, host: InvokeHost, record: EventRecord) -> Event | Stale | None:
        """An invoker's translation of ``record``; None if it is no invoker's reply."""
        invoker = self._by_reply.get(record.name)
        return None if invoker is None else invoker.reply(host, record)

    @property
    def types(self) -> tuple[str, ...]:
        """The registered invoke types."""
        return tuple(sorted(self._by_type))
