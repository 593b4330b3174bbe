"""The transport port: what an event broker adapter implements.

Events leave a run through the **outbox** (rows committed in the same transaction as the
step that published them) and reach a consumer group through its **inbox** (the group's
mailbox runs, where each event id is recorded once, in the same transaction as the
handler's checkpoint). A transport carries envelopes between the two:

    outbox --(OutboxRelay: publish + confirm, then mark published)--> Transport
    Transport --(DeliveryHandler: queue in the group's inbox, then ack)--> mailbox runs

The default transport needs no broker: the store relays outbox rows straight into the
inboxes in one transaction (``tripwright.bus.store``). Broker adapters (RabbitMQ, NATS
JetStream) implement :class:`Transport`; ``create_transport(url)`` picks one by URL.

Delivery contract (what an adapter must guarantee, and what it may do):

- **At least once.** :meth:`Transport.publish` returns only once the broker confirmed
  every message of the batch durably (publisher confirms, JetStream acks); on any doubt it
  raises :class:`TransportError` and the relay publishes the batch again. A consumer
  acknowledges a message only after the :data:`DeliveryHandler` returned :attr:`ACK` for
  it (the event is then committed in the inbox). Duplicates are therefore allowed, on both
  sides, at any time; losses are not.
- **Order per subject.** Within one consumer group, messages of one ``(topic, subject)``
  reach the handler in publish order, and a later one is not handed over while an earlier
  one is unacknowledged (for example: route each subject to one of N partition queues with
  a single active consumer each; a batch given to the handler is in order). A
  :class:`Retry` stops the subject: the adapter redelivers that message before any later
  message of the same subject (the handler also answers ``Retry`` for every later message
  of that subject in the same batch). Messages of different subjects may interleave.
- **Dedupe is the consumer's job, and it is built in.** The handler queues each event in
  the group's inbox under the event's ``id`` (the CloudEvents ``id``, unique per event);
  the inbox refuses an id it has already seen, so a redelivered or republished event is
  acknowledged again without being applied twice. Adapters may dedupe too (JetStream's
  ``Nats-Msg-Id`` window) but nothing relies on it. Inbox rows of handled events are kept
  until pruned (see ``EventBus.prune``): prune only past the broker's redelivery horizon.
- **Dispositions.** :attr:`ACK`: done, remove the message. :class:`Retry`: the event could
  not be queued (the store was unreachable, say); redeliver after ``delay`` seconds, with
  ``Delivery.attempt`` counting up. :class:`Reject`: the message is poison (not a valid
  envelope, say) and the handler has already written it, raw body included, to
  Tripwright's dead-letter store; remove it without redelivery (``nack`` without requeue,
  ``term``). Handler failures inside a group are retried and dead-lettered by the engine,
  not by the broker: a broker's own dead-lettering only ever sees rejected messages.
- **Errors.** Every driver exception is translated into :class:`TransportError` (with the
  driver's exception as ``__cause__``); a use before :meth:`connect` or after :meth:`close`
  raises :class:`TransportClosedError`. Losing the connection while consuming is retried
  by the adapter with backoff; unacknowledged messages are redelivered by the broker.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final, TypeAlias

from tripwright.bus.envelope import CloudEvent

__all__ = [
    "ACK",
    "Ack",
    "DeadLetterHandler",
    "Delivery",
    "DeliveryHandler",
    "Disposition",
    "OutgoingMessage",
    "Reject",
    "Retry",
    "Subscription",
    "Transport",
]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """An envelope to publish on ``topic``; ``key`` (the subject) orders and partitions."""

    topic: str
    envelope: CloudEvent
    #: The outbox row this message comes from (for logs and the relay's bookkeeping).
    outbox_id: int | None = None

    @property
    def key(self) -> str:
        """The ordering key: the subject, or the event id for subject-less events."""
        return self.envelope.subject or self.envelope.id

    @property
    def body(self) -> bytes:
        """The structured-mode JSON body."""
        return self.envelope.to_bytes()


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message as a consumer received it: raw, because it may be malformed."""

    topic: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    #: 1 on the first delivery, counting redeliveries (the broker's delivery count).
    attempt: int = 1
    #: The broker's own id of the message, for logs.
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """The event is committed in the inbox (or was already): remove the message."""


@dataclass(frozen=True, slots=True)
class Retry:
    """The event could not be queued now: redeliver it after ``delay`` seconds."""

    delay: float = 1.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Reject:
    """Poison: already recorded in the dead-letter store; remove it, never redeliver."""

    reason: str


Disposition: TypeAlias = Ack | Retry | Reject
ACK: Final = Ack()

#: What a consumer calls with a batch of deliveries (in order); it returns one
#: disposition per delivery, in the same order. It never raises for a single bad message.
DeliveryHandler: TypeAlias = Callable[[Sequence[Delivery]], Awaitable[Sequence[Disposition]]]

#: What a consumer calls with a message the broker itself dead-lettered (delivered the
#: configured number of times to consumers that died without settling it) and the
#: broker's reason. It writes the message to Tripwright's dead-letter store, so that there
#: is one place to list and redrive dead letters whatever the transport; if it raises,
#: the message stays with the broker and is offered again later.
DeadLetterHandler: TypeAlias = Callable[[Delivery, str], Awaitable[None]]


class Subscription(ABC):
    """A running consumer of one group; close it to stop consuming."""

    @abstractmethod
    async def close(self) -> None:
        """Stop fetching, wait for handler calls in flight and settle their messages."""


class Transport(ABC):
    """An event broker adapter (see the module docstring for the delivery contract)."""

    #: The URL scheme this adapter serves (``amqp``, ``nats``, ``memory``).
    scheme: ClassVar[str]

    @abstractmethod
    async def connect(self) -> None:
        """Connect (and declare what the adapter needs); :class:`TransportError` if the
        broker is unreachable or refuses the credentials."""

    @abstractmethod
    async def close(self) -> None:
        """Close subscriptions and the connection; later calls raise
        :class:`TransportClosedError`."""

    async def __aenter__(self) -> Transport:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abstractmethod
    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish a batch, in order, and return once the broker confirmed all of it.

        On failure raise :class:`TransportError`: some messages may have been published,
        and the relay will publish the whole batch again (duplicates are absorbed by the
        consumers' inboxes).
        """

    @abstractmethod
    async def subscribe(
        self,
        group: str,
        topics: Sequence[str],
        handler: DeliveryHandler,
        *,
        prefetch: int = 64,
        on_dead_letter: DeadLetterHandler | None = None,
    ) -> Subscription:
        """Consume ``topics`` for consumer group ``group`` (durably: messages published
        while no consumer runs wait for it). Several subscriptions of one group, in one
        process or many, share its messages; every group gets every message.

        ``handler`` is called with batches of at most ``prefetch`` deliveries, in order per
        subject, and its dispositions settle the messages. ``on_dead_letter`` receives the
        messages the broker dead-lettered (without it they stay in the broker's own
        dead-letter queue); transports that never give up on a message never call it.
        """
