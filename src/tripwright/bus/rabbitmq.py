"""RabbitMQ transport (``amqp://``), on aio-pika.

Layout, for prefix ``P``, ``N`` partitions, and a consumer group ``G``:

- one durable direct exchange ``P.events``; a message of topic ``T`` whose subject hashes
  to partition ``i`` is published with routing key ``T.i``;
- per group, ``N`` durable **quorum** queues ``P.G.i`` with ``x-single-active-consumer``:
  however many processes consume the group, the broker hands each queue to one of them
  at a time, in order (the others stand by and take over, from the first unacknowledged
  message, when it goes away); each queue is bound to ``T.i`` for the group's topics;
- per group, a dead-letter queue ``P.G.dead``: a message delivered ``max_deliver`` times
  to consumers that died without acknowledging it (``x-delivery-limit``) is dead-lettered
  there by the broker, and the subscription moves it to Tripwright's dead-letter store
  (``on_dead_letter``), so there is one place to list and redrive dead letters.

Publishing uses publisher confirms: :meth:`publish` returns once the broker has written
the whole batch to the queues. Consuming uses manual acknowledgements with a prefetch
window (the channel's QoS). The connection is robust: when it drops, the driver
reconnects with backoff, declares the topology again and resumes the consumers; messages
unacknowledged at the time are redelivered by the broker (the inbox absorbs the copies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from tripwright.bus.base import (
    DeadLetterHandler,
    Delivery,
    DeliveryHandler,
    OutgoingMessage,
    Subscription,
    Transport,
)
from tripwright.bus.lanes import Inflight, Lanes
from tripwright.bus.options import BrokerOptions, partition_of, redact, split_options
from tripwright.bus.wire import confirm_all, decode_body, encode
from tripwright.errors import TransportClosedError, TransportError

__all__ = ["RabbitMQTransport"]

log = logging.getLogger("tripwright.bus")

_DRIVER_ERRORS = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.AMQPException,
    OSError,
)


def _fail(what: str, url: str, exc: BaseException) -> TransportError:
    if isinstance(
        exc, aiormq.exceptions.ProbableAuthenticationError | aiormq.exceptions.AuthenticationError
    ):
        return TransportError(f"RabbitMQ at {redact(url)} refused the credentials ({what})")
    if isinstance(exc, TimeoutError):
        return TransportError(f"RabbitMQ at {redact(url)} did not answer in time ({what})")
    if isinstance(exc, OSError | aiormq.exceptions.AMQPConnectionError) and what == "connecting":
        return TransportError(f"RabbitMQ at {redact(url)} is unreachable ({what}): {exc}")
    return TransportError(f"RabbitMQ at {redact(url)}: {what} failed: {exc or type(exc).__name__}")


class _Message(Inflight):
    def __init__(self, delivery: Delivery, message: AbstractIncomingMessage) -> None:
        super().__init__(delivery)
        self._message = message

    async def ack(self) -> None:
        await self._settle(self._message.ack())

    async def reject(self) -> None:
        # The handler has written the message to the dead-letter store already: drop it
        # here rather than dead-lettering it in the broker a second time.
        await self._settle(self._message.ack())

    async def release(self) -> None:
        await self._settle(self._message.nack(requeue=True))

    def stale(self) -> bool:
        # A delivery tag means something only on the channel it came over: once that
        # channel is gone the broker has taken the message back and redelivers it on the
        # channel the robust connection restored (which can happen before any reconnect
        # callback runs, so the channel itself is what is checked).
        try:
            return self._message.channel.is_closed
        except aiormq.exceptions.ChannelInvalidStateError:
            return True

    async def _settle(self, call: Awaitable[None]) -> None:
        try:
            await call
        except _DRIVER_ERRORS as exc:
            raise TransportError(f"settling a RabbitMQ message failed: {exc}") from exc


def _delivery(message: AbstractIncomingMessage, topic: str) -> Delivery:
    headers: Mapping[str, Any] = message.headers or {}
    count = headers.get("x-delivery-count", 0)
    attempt = 1 + (count if isinstance(count, int) else 0)
    if attempt == 1 and message.redelivered:
        attempt = 2
    text = {
        k: v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        for k, v in headers.items()
        if isinstance(v, str | bytes | int | bool)
    }
    return Delivery(
        topic=topic,
        body=decode_body(message.body, text),
        headers=text,
        attempt=attempt,
        message_id=message.message_id,
    )


def _topic_of(routing_key: str | None) -> str:
    return (routing_key or "").rpartition(".")[0]


class _RabbitSubscription(Subscription):
    def __init__(
        self,
        transport: RabbitMQTransport,
        group: str,
        lanes: Lanes,
        channel: AbstractChannel,
        queues: list[tuple[AbstractQueue, str]],
    ) -> None:
        self._transport = transport
        self.group = group
        self._lanes = lanes
        self._channel = channel
        self._queues = queues
        self._task = asyncio.create_task(lanes.run(), name=f"rabbitmq consume {group}")
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for queue, tag in self._queues:
            with contextlib.suppress(*_DRIVER_ERRORS, asyncio.CancelledError):
                await queue.cancel(tag)
        self._lanes.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._lanes.release_all()
        with contextlib.suppress(*_DRIVER_ERRORS):
            await self._channel.close()
        self._transport._forget(self)


class RabbitMQTransport(Transport):
    """RabbitMQ adapter: partition quorum queues, single active consumer, confirms."""

    scheme = "amqp"

    def __init__(self, url: str, options: BrokerOptions | None = None) -> None:
        driver_url, from_url = split_options(url)
        self.url = driver_url
        self.options = options or from_url
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._subscriptions: list[_RabbitSubscription] = []
        self._publish_lock = asyncio.Lock()

    @property
    def _events_exchange(self) -> str:
        return f"{self.options.prefix}.events"

    @property
    def _dead_exchange(self) -> str:
        return f"{self.options.prefix}.dead"

    def queue_names(self, group: str) -> list[str]:
        """The partition queues of ``group`` (for operators and tests)."""
        return [f"{self.options.prefix}.{group}.{i}" for i in range(self.options.partitions)]

    def dead_queue_name(self, group: str) -> str:
        """The broker's dead-letter queue of ``group``."""
        return f"{self.options.prefix}.{group}.dead"

    async def connect(self) -> None:
        if self._connection is not None:
            return
        try:
            connection = await aio_pika.connect_robust(
                self.url,
                timeout=self.options.connect_timeout,
                reconnect_interval=1.0,
            )
        except (*_DRIVER_ERRORS, TimeoutError, ConnectionError) as exc:
            raise _fail("connecting", self.url, exc) from exc
        connection.reconnect_callbacks.add(self._reconnected)
        self._connection = connection
        try:
            self._publish_channel = await connection.channel(publisher_confirms=True)
            self._exchange = await self._publish_channel.declare_exchange(
                self._events_exchange, aio_pika.ExchangeType.DIRECT, durable=True
            )
        except _DRIVER_ERRORS as exc:
            await self.close()
            raise _fail("declaring the exchange", self.url, exc) from exc

    def _reconnected(self, *_: object) -> None:
        log.warning("reconnected to RabbitMQ at %s", redact(self.url))

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        connection, self._connection = self._connection, None
        self._exchange = self._publish_channel = None
        if connection is not None:
            with contextlib.suppress(*_DRIVER_ERRORS):
                await connection.close()

    def _forget(self, subscription: _RabbitSubscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    def _live(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise TransportClosedError("the RabbitMQ transport is not connected")
        return self._connection

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        self._live()
        exchange = self._exchange
        assert exchange is not None
        partitions = self.options.partitions

        def send(message: OutgoingMessage) -> Callable[[], Awaitable[object]]:
            wire = encode(message)
            envelope = message.envelope
            body = aio_pika.Message(
                wire.body,
                headers=dict(wire.headers),
                content_type=wire.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=envelope.id,
                correlation_id=envelope.correlationid,
                type=envelope.type,
            )
            key = f"{message.topic}.{partition_of(message.key, partitions)}"
            return lambda: exchange.publish(body, key, mandatory=False)

        async with self._publish_lock:  # one batch at a time keeps the batches in order
            try:
                await confirm_all(send(m) for m in messages)
            except (*_DRIVER_ERRORS, TimeoutError, ConnectionError) as exc:
                raise _fail(f"publishing {len(messages)} messages", self.url, exc) from exc

    async def subscribe(
        self,
        group: str,
        topics: Sequence[str],
        handler: DeliveryHandler,
        *,
        prefetch: int = 64,
        on_dead_letter: DeadLetterHandler | None = None,
    ) -> Subscription:
        connection = self._live()
        lanes = Lanes(handler, prefetch)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=prefetch)
            queues = await self._declare(channel, group, topics)
            consumers: list[tuple[AbstractQueue, str]] = []
            for index, queue in enumerate(queues[:-1]):
                lane = str(index)

                async def on_message(message: AbstractIncomingMessage, lane: str = lane) -> None:
                    delivery = _delivery(message, _topic_of(message.routing_key))
                    lanes.put(lane, _Message(delivery, message))

                consumers.append((queue, await queue.consume(on_message)))
            if on_dead_letter is not None:
                dead = queues[-1]
                consumers.append((dead, await dead.consume(self._dead_letters(on_dead_letter))))
        except _DRIVER_ERRORS as exc:
            raise _fail(f"subscribing group {group!r}", self.url, exc) from exc
        subscription = _RabbitSubscription(self, group, lanes, channel, consumers)
        self._subscriptions.append(subscription)
        return subscription

    async def _declare(
        self, channel: AbstractChannel, group: str, topics: Sequence[str]
    ) -> list[AbstractQueue]:
        """The group's partition queues (bound to its topics) and its dead-letter queue."""
        exchange = await channel.declare_exchange(
            self._events_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        dead_exchange = await channel.declare_exchange(
            self._dead_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        dead = await channel.declare_queue(
            self.dead_queue_name(group), durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(dead_exchange, routing_key=group)
        queues: list[AbstractQueue] = []
        for index, name in enumerate(self.queue_names(group)):
            queue = await channel.declare_queue(
                name,
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-single-active-consumer": True,
                    # the broker counts returns: max_deliver deliveries are max_deliver - 1 returns
                    "x-delivery-limit": self.options.max_deliver - 1,
                    "x-dead-letter-exchange": self._dead_exchange,
                    "x-dead-letter-routing-key": group,
                },
            )
            for topic in topics:
                await queue.bind(exchange, routing_key=f"{topic}.{index}")
            queues.append(queue)
        return [*queues, dead]

    def _dead_letters(
        self, on_dead_letter: DeadLetterHandler
    ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def on_message(message: AbstractIncomingMessage) -> None:
            deaths = (message.headers or {}).get("x-death")
            reason, topic = "dead-lettered by RabbitMQ", ""
            if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
                first = deaths[0]
                reason = f"dead-lettered by RabbitMQ: {first.get('reason')!s}"
                keys = first.get("routing-keys")
                if isinstance(keys, list) and keys:
                    topic = _topic_of(str(keys[0]))
            delivery = _delivery(message, topic)
            try:
                await on_dead_letter(delivery, reason)
            except Exception as exc:  # keep it in the broker's queue and try again later
                log.warning("could not store a dead letter from RabbitMQ: %s", exc)
                await asyncio.sleep(1.0)
                with contextlib.suppress(*_DRIVER_ERRORS):
                    await message.nack(requeue=True)
                return
            with contextlib.suppress(*_DRIVER_ERRORS):
                await message.ack()

        return on_message

    async def delete_group(self, group: str) -> None:
        """Delete the broker queues of ``group`` (tests, and retiring a group)."""
        channel = await self._live().channel()
        try:
            for name in [*self.queue_names(group), self.dead_queue_name(group)]:
                await channel.queue_delete(name)
        except _DRIVER_ERRORS as exc:
            raise _fail(f"deleting group {group!r}", self.url, exc) from exc
        finally:
            with contextlib.suppress(*_DRIVER_ERRORS):
                await channel.close()
