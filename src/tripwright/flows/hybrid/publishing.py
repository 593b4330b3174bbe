"""Typed events published from a statechart's transitions, through the outbox.

A send of type ``event`` publishes a typed :class:`~tripwright.bus.Event`: its name is
the event's ``type_name``, its data the event's fields (validated by the event class),
its target the event's topic (or empty)::

    <send type="event" event="trip.confirmed" target="trips" namelist="trip_id total"/>

    publish(TripConfirmed, namelist=("trip_id", "total"))       # the same, in Python
    on("paid", "confirmed", actions=publish(TripConfirmed, trip_id="trip_id"))

    def confirm(ctx: ActionContext) -> None:                   # from a Python action
        emit(ctx, TripConfirmed(trip_id=ctx.data["trip_id"], total="120.00"))

:class:`TypedEvents` turns each into an outbox message committed with the macrostep, in
the CloudEvents envelope consumer groups decode: ``source``
``/tripwright/flows/<flow>/runs/<run>``, ``subject`` the run's correlation id (the trip),
``dataschema`` naming the type and version, a ``traceparent`` whose trace id is the
correlation's (every event of one trip in one trace) and the ``correlationid``
extension. Its id is derived from the macrostep's idempotency key, so a macrostep that
runs again after a crash publishes the same ids (which the groups' inboxes absorb).

A send naming an event class the definition does not declare, or data the class
refuses, is not published: the machine gets ``error.communication`` with the reason.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping

from tripwright.bus.envelope import schema_uri
from tripwright.bus.event import Event
from tripwright.errors import EventSchemaError
from tripwright.flows.statechart.context import ActionContext
from tripwright.flows.statechart.invokers import InvokeHost
from tripwright.flows.statechart.model import Content, Param, Send
from tripwright.flows.statechart.outputs import OutgoingEvent
from tripwright.flows.statechart.processors import Processor

__all__ = ["EVENT", "TypedEvents", "emit", "publish"]

#: The send type of typed events.
EVENT = "event"
_IDS = uuid.UUID("3b0c8f47-2a51-4c1e-9d0b-5f6e7a8b9c01")


def publish(
    kind: type[Event],
    *,
    namelist: Iterable[str] = (),
    content: str | None = None,
    **params: str,
) -> Send:
    """A send publishing a ``kind`` event: its data from datamodel variables
    (``namelist``), from expressions (``field="expr"``), or one expression (``content``)."""
    return Send(
        event=kind.type_name,
        type=EVENT,
        target=kind.topic,
        namelist=tuple(namelist),
        params=tuple(Param(name, expr=expr) for name, expr in params.items()),
        content=Content(expr=content) if content is not None else None,
    )


def emit(ctx: ActionContext, event: Event) -> str:
    """Publish ``event`` from a Python action (with the macrostep); returns the send id."""
    return ctx.send(event.type_name, event.to_data(), target=event.topic, type=EVENT)


class TypedEvents(Processor):
    """Publishes sends of type ``event`` as typed CloudEvents, for the declared classes."""

    def __init__(self, kinds: Iterable[type[Event]] | Mapping[str, type[Event]]) -> None:
        items = kinds.values() if isinstance(kinds, Mapping) else kinds
        self.kinds: dict[str, type[Event]] = {k.type_name: k for k in items}

    def send(self, host: InvokeHost, output: OutgoingEvent) -> None:
        name = output.event.name
        kind = self.kinds.get(name)
        if kind is None:
            declared = ", ".join(sorted(self.kinds)) or "none"
            self._fail(host, name, f"event type {name!r} is not declared (declared: {declared})")
            return
        if output.target and output.target != kind.topic:
            self._fail(
                host, name, f"{name!r} is published on topic {kind.topic!r}, not {output.target!r}"
            )
            return
        try:
            event = kind.from_data(output.event.data if output.event.data is not None else {})
        except EventSchemaError as exc:
            self._fail(host, name, str(exc))
            return
        ctx = host.step_context
        event_id = uuid.uuid5(_IDS, f"{ctx.idempotency_key}/{len(ctx.effects.outbox)}").hex
        correlation = ctx.correlation_id
        trace = hashlib.sha256(correlation.encode()).hexdigest()[:32]
        span = hashlib.sha256(event_id.encode()).hexdigest()[:16]
        ctx.publish(
            kind.topic,
            kind.type_name,
            event.to_data(),
            subject=correlation,
            headers={
                "source": f"/tripwright/flows/{ctx.flow.name}/runs/{ctx.run_id}",
                "dataschema": schema_uri(kind.type_name, kind.version),
                "traceparent": f"00-{trace}-{span}-01",
                "correlationid": correlation,
            },
            event_id=event_id,
        )

    @staticmethod
    def _fail(host: InvokeHost, name: str, message: str) -> None:
        host.deliver("error.communication", {"message": message, "event": name})
