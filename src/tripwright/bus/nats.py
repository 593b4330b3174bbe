"""NATS JetStream transport (``nats://``), on nats-py.

Layout, for prefix ``P``, ``N`` partitions, and a consumer group ``G``:

- a stream per event family (topic) ``T``: ``P_T`` over the subjects ``P.T.*``; a message
  whose subject hashes to partition ``i`` is published on ``P.T.i`` with ``Nats-Msg-Id``
  set to the event id, so the stream drops a republished copy within its duplicate
  window (the inboxes drop any later one);
- per group, topic and partition, a durable pull consumer ``G_i`` on ``P_T`` filtered to
  ``P.T.i``, with explicit acks, ``max_ack_pending=1`` and ``max_deliver``. One message
  per partition is in flight at a time, whichever process of the group fetched it, which
  keeps each subject in order across any number of consumer processes without electing
  an owner per partition; the subscription fetches from all its partitions at once and
  hands the handler one batch across them;
- a message delivered ``max_deliver`` times to consumers that died without acknowledging
  it is given up by the consumer: the server announces it (a ``MAX_DELIVERIES``
  advisory), and the subscription reads it from the stream and moves it to Tripwright's
  dead-letter store (``on_dead_letter``).

Acks: :class:`Ack` acks, :class:`Reject` terminates (``term``), a message held for a
:class:`Retry` is kept alive with ``in_progress`` and handed over again after the delay;
messages fetched but not handled when a subscription closes are given back with ``nak``.
The connection reconnects by itself, with a wait between attempts; fetches in flight
fail and are retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

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

__all__ = ["NatsTransport"]

log = logging.getLogger("tripwright.bus")

_DRIVER_ERRORS = (nats.errors.Error, OSError, TimeoutError)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
#: Seconds a fetch waits on the server for a message before asking again.
_FETCH_WAIT = 5.0


def _fail(what: str, url: str, exc: BaseException) -> TransportError:
    text = str(exc) or type(exc).__name__
    if "authorization" in text.lower() or "authentication" in text.lower():
        return TransportError(f"NATS at {redact(url)} refused the credentials ({what})")
    if isinstance(exc, TimeoutError | nats.errors.TimeoutError):
        return TransportError(f"NATS at {redact(url)} did not answer in time ({what})")
    if isinstance(exc, nats.errors.NoServersError):
        return TransportError(f"NATS at {redact(url)} is unreachable ({what})")
    if isinstance(exc, nats.js.errors.ServiceUnavailableError | nats.errors.NoRespondersError):
        return TransportError(f"NATS at {redact(url)} has no JetStream ({what}): {text}")
    return TransportError(f"NATS at {redact(url)}: {what} failed: {text}")


def _name(value: str, what: str) -> str:
    if not _TOKEN.match(value):
        raise TransportError(f"{what} {value!r}: NATS names take letters, digits, '_', '-', '.'")
    return value


class _NatsMessage(Inflight):
    def __init__(self, delivery: Delivery, msg: Msg) -> None:
        super().__init__(delivery)
        self._msg = msg

    async def ack(self) -> None:
        await self._call(self._msg.ack())

    async def reject(self) -> None:
        await self._call(self._msg.term())

    async def release(self) -> None:
        await self._call(self._msg.nak())

    async def touch(self) -> None:
        await self._call(self._msg.in_progress())

    async def _call(self, call: Any) -> None:
        try:
            await call
        except _DRIVER_ERRORS as exc:
            raise TransportError(f"settling a NATS message failed: {exc}") from exc


def _delivery(
    topic: str, data: bytes, headers: Mapping[str, str] | None, attempt: int, message_id: str
) -> Delivery:
    text = dict(headers or {})
    return Delivery(topic, decode_body(data, text), text, attempt, message_id)


class _NatsSubscription(Subscription):
    def __init__(self, transport: NatsTransport, group: str, lanes: Lanes) -> None:
        self._transport = transport
        self.group = group
        self._lanes = lanes
        self._fetchers: list[asyncio.Task[None]] = []
        self._advisories: list[Any] = []
        self._runner = asyncio.create_task(lanes.run(), name=f"nats consume {group}")
        self._closed = False

    def fetch_from(self, lane: str, topic: str, psub: JetStreamContext.PullSubscription) -> None:
        self._fetchers.append(
            asyncio.create_task(self._fetch(lane, topic, psub), name=f"nats fetch {lane}")
        )

    async def _fetch(self, lane: str, topic: str, psub: JetStreamContext.PullSubscription) -> None:
        backoff = 0.1
        while True:
            await self._lanes.wait_empty(lane)
            try:
                msgs = await psub.fetch(1, timeout=_FETCH_WAIT)
            except (nats.errors.TimeoutError, TimeoutError):
                # Nothing to deliver in time: the idle case, whichever timeout the driver
                # raises for it (its own, or asyncio's, which is TimeoutError), not a fault.
                continue
            except _DRIVER_ERRORS as exc:
                log.warning("fetching from NATS failed, retrying in %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            for msg in msgs:
                meta = msg.metadata
                delivery = _delivery(
                    topic,
                    msg.data,
                    msg.headers,
                    meta.num_delivered,
                    f"{meta.stream}:{meta.sequence.stream}",
                )
                self._lanes.put(lane, _NatsMessage(delivery, msg))

    def watch(self, advisory: Any) -> None:
        self._advisories.append(advisory)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._fetchers:
            task.cancel()
        for task in self._fetchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lanes.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await self._runner
        await self._lanes.release_all()
        for advisory in self._advisories:
            with contextlib.suppress(*_DRIVER_ERRORS):
                await advisory.unsubscribe()
        self._transport._forget(self)


class NatsTransport(Transport):
    """NATS JetStream adapter: a stream per topic, partitioned durable pull consumers."""

    scheme = "nats"

    def __init__(self, url: str, options: BrokerOptions | None = None) -> None:
        driver_url, from_url = split_options(url)
        self.url = driver_url
        self.options = options or from_url
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._streams: set[str] = set()
        self._subscriptions: list[_NatsSubscription] = []
        self._publish_lock = asyncio.Lock()

    def stream_name(self, topic: str) -> str:
        """The stream of ``topic``."""
        return f"{self.options.prefix}_{_name(topic, 'topic').replace('.', '_')}"

    def subject(self, topic: str, partition: int) -> str:
        """The subject of ``topic``'s partition ``partition``."""
        return f"{self.options.prefix}.{topic}.{partition}"

    async def connect(self) -> None:
        if self._nc is not None:
            return

        async def on_error(exc: Exception) -> None:
            log.warning("NATS at %s: %s", redact(self.url), exc)

        async def on_reconnect() -> None:
            log.warning("reconnected to NATS at %s", redact(self.url))

        try:
            # Fail fast on the first connection; reconnect for ever once connected.
            nc = await nats.connect(
                self.url,
                connect_timeout=max(1, round(self.options.connect_timeout)),
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.2,
                error_cb=on_error,
                reconnected_cb=on_reconnect,
            )
        except (*_DRIVER_ERRORS, ConnectionError) as exc:
            raise _fail("connecting", self.url, exc) from exc
        nc.options.update(allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=1)
        self._nc = nc
        self._js = nc.jetstream(timeout=self.options.connect_timeout)
        try:
            await self._js.account_info()
        except _DRIVER_ERRORS as exc:
            await self.close()
            raise _fail("checking JetStream", self.url, exc) from exc

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        nc, self._nc, self._js = self._nc, None, None
        self._streams.clear()
        if nc is not None:
            with contextlib.suppress(*_DRIVER_ERRORS):
                await nc.close()

    def _forget(self, subscription: _NatsSubscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    def _live(self) -> JetStreamContext:
        if self._js is None:
            raise TransportClosedError("the NATS transport is not connected")
        return self._js

    async def _ensure_stream(self, topic: str) -> str:
        name = self.stream_name(topic)
        if name in self._streams:
            return name
        js = self._live()
        config = api.StreamConfig(
            name=name,
            subjects=[f"{self.options.prefix}.{topic}.*"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=7 * 24 * 3600.0,
            duplicate_window=self.options.duplicate_window,
        )
        try:
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:  # it exists with another configuration
                await js.update_stream(config)
        except _DRIVER_ERRORS as exc:
            raise _fail(f"declaring stream {name}", self.url, exc) from exc
        self._streams.add(name)
        return name

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        js = self._live()
        partitions = self.options.partitions

        def send(message: OutgoingMessage) -> Callable[[], Awaitable[object]]:
            wire = encode(message)
            headers = {
                **wire.headers,
                "content-type": wire.content_type,
                "Nats-Msg-Id": message.envelope.id,
            }
            subject = self.subject(message.topic, partition_of(message.key, partitions))
            return lambda: js.publish(subject, wire.body, headers=headers)

        async with self._publish_lock:  # one batch at a time keeps the batches in order
            try:
                for topic in {m.topic for m in messages}:
                    await self._ensure_stream(topic)
                await confirm_all(send(m) for m in messages)
            except (*_DRIVER_ERRORS, ConnectionError) as exc:
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
        js = self._live()
        nc = self._nc
        assert nc is not None
        _name(group, "consumer group")
        lanes = Lanes(handler, prefetch, keepalive=self.options.ack_wait / 3)
        subscription = _NatsSubscription(self, group, lanes)
        self._subscriptions.append(subscription)
        try:
            for topic in topics:
                stream = await self._ensure_stream(topic)
                for index in range(self.options.partitions):
                    durable = f"{group.replace('.', '_')}_{index}"
                    config = api.ConsumerConfig(
                        durable_name=durable,
                        filter_subject=self.subject(topic, index),
                        ack_policy=api.AckPolicy.EXPLICIT,
                        deliver_policy=api.DeliverPolicy.NEW,
                        max_ack_pending=1,
                        max_deliver=self.options.max_deliver,
                        ack_wait=self.options.ack_wait,
                    )
                    psub = await js.pull_subscribe(
                        self.subject(topic, index), durable=durable, stream=stream, config=config
                    )
                    subscription.fetch_from(f"{topic}.{index}", topic, psub)
                if on_dead_letter is not None:
                    advisory = await nc.subscribe(
                        f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.*",
                        queue=group.replace(".", "_"),
                        cb=self._dead_letters(group, topic, stream, on_dead_letter),
                    )
                    subscription.watch(advisory)
        except (*_DRIVER_ERRORS, TransportError) as exc:
            await subscription.close()
            if isinstance(exc, TransportError):
                raise
            raise _fail(f"subscribing group {group!r}", self.url, exc) from exc
        return subscription

    def _dead_letters(
        self, group: str, topic: str, stream: str, on_dead_letter: DeadLetterHandler
    ) -> Any:
        prefix = f"{group.replace('.', '_')}_"

        async def on_advisory(msg: Msg) -> None:
            try:
                note = json.loads(msg.data)
                consumer, seq = str(note["consumer"]), int(note["stream_seq"])
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable NATS advisory: %r", msg.data[:200])
                return
            if not consumer.startswith(prefix) or not consumer[len(prefix) :].isdigit():
                return
            reason = f"dead-lettered by NATS: delivered {note.get('deliveries')} times"
            for attempt in range(5):
                try:
                    raw = await self._live().get_msg(stream, seq)
                    delivery = _delivery(
                        topic,
                        raw.data or b"",
                        raw.headers,
                        int(note.get("deliveries") or 0),
                        f"{stream}:{seq}",
                    )
                    await on_dead_letter(delivery, reason)
                    return
                except Exception as exc:  # the advisory is not redelivered: try a few times
                    log.warning("could not store a dead letter from NATS (%s): %s", seq, exc)
                    await asyncio.sleep(0.5 * 2**attempt)

        return on_advisory

    async def delete_topic(self, topic: str) -> None:
        """Delete the stream of ``topic`` with its consumers (tests, retiring a family)."""
        js = self._live()
        name = self.stream_name(topic)
        try:
            await js.delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        except _DRIVER_ERRORS as exc:
            raise _fail(f"deleting stream {name}", self.url, exc) from exc
        self._streams.discard(name)
