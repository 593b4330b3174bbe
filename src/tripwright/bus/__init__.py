"""Event transport: CloudEvents envelopes, typed events, the transport port and relays.

The default transport is the store itself (outbox rows go straight into the consumer
groups' inboxes); brokers implement :class:`Transport` and are chosen by URL with
:func:`create_transport`: ``tripwright.bus.rabbitmq.RabbitMQTransport`` (``amqp://``) and
``tripwright.bus.nats.NatsTransport`` (``nats://``), imported only when used.
"""

from __future__ import annotations

from tripwright.bus.base import (
    ACK,
    Ack,
    DeadLetterHandler,
    Delivery,
    DeliveryHandler,
    Disposition,
    OutgoingMessage,
    Reject,
    Retry,
    Subscription,
    Transport,
)
from tripwright.bus.envelope import CONTENT_TYPE, CloudEvent, schema_uri, schema_version
from tripwright.bus.event import Event, Upcaster
from tripwright.bus.factory import DEFAULT_BROKER, broker_scheme, create_transport
from tripwright.bus.memory import MemoryTransport
from tripwright.bus.options import BrokerOptions
from tripwright.bus.relay import OutboxRecord, OutboxRelay, outbox_envelope

__all__ = [
    "ACK",
    "CONTENT_TYPE",
    "DEFAULT_BROKER",
    "Ack",
    "BrokerOptions",
    "CloudEvent",
    "DeadLetterHandler",
    "Delivery",
    "DeliveryHandler",
    "Disposition",
    "Event",
    "MemoryTransport",
    "OutboxRecord",
    "OutboxRelay",
    "OutgoingMessage",
    "Reject",
    "Retry",
    "Subscription",
    "Transport",
    "Upcaster",
    "broker_scheme",
    "create_transport",
    "outbox_envelope",
    "schema_uri",
    "schema_version",
]
