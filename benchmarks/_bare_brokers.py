"""The brokers' own durable rate: bare aio-pika and nats-py loops, no Tripwright in them.

Each loop publishes ``count`` messages, as many at a time as the relay does (a batch
pipelined, then every confirmation awaited), while ``consumers`` processes consume them
with acknowledgements; the rate is from the first publish to the last acknowledgement.

- RabbitMQ: publisher confirms, one durable quorum queue (the queue type Tripwright's
  partition queues have), persistent messages, manual acks with a prefetch of 64.
- NATS JetStream: a file-backed stream, publishes acknowledged by the stream (with
  ``Nats-Msg-Id``, as Tripwright sends them), one durable pull consumer with explicit
  acks, fetched 64 at a time.

The messages carry the body and headers Tripwright's adapters send for a benchmark event
(CloudEvents binary mode), so both sides move the same bytes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

import aio_pika
import nats
import nats.errors
from nats.js import api

from benchmarks._broker_flows import Hop
from benchmarks._proc_cpu import cpu_seconds
from tripwright.bus import OutgoingMessage
from tripwright.bus.wire import WireMessage, confirm_all, encode

__all__ = ["BareResult", "bare_rate"]

PREFETCH = 64
#: Messages published per pipelined batch: the relay's batch.
PUBLISH_BATCH = 500


@dataclass(frozen=True)
class BareResult:
    """What a bare loop measured."""

    events_per_s: float
    #: CPU seconds of the publishing process and of the consumer processes (measured part).
    publisher_cpu: float
    consumer_cpu: float
    #: CPU seconds of the processes the caller asked to watch (the broker server).
    watched_cpu: float


def _wire(index: int) -> WireMessage:
    subject = f"S{index % 1000}"
    envelope = Hop(n=index).envelope(source="/bench", subject=subject, id=f"bare-{index}")
    return encode(OutgoingMessage(Hop.topic, envelope))


async def _rabbit_consume(
    url: str, queue_name: str, acked: Synchronized[int], ready: ProcessEvent, stop: ProcessEvent
) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.get_queue(queue_name)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            with acked.get_lock():
                acked.value += 1

        await queue.consume(on_message)
        ready.set()
        while not stop.is_set():  # noqa: ASYNC110 - a process event, not an asyncio one
            await asyncio.sleep(0.05)


async def _nats_consume(
    url: str, stream: str, acked: Synchronized[int], ready: ProcessEvent, stop: ProcessEvent
) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        psub = await js.pull_subscribe(f"{stream}.events", durable="bare", stream=stream)
        ready.set()
        while not stop.is_set():
            try:
                msgs = await psub.fetch(PREFETCH, timeout=0.5)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            for msg in msgs:
                await msg.ack()
            with acked.get_lock():
                acked.value += len(msgs)
    finally:
        await nc.close()


def _consumer_main(kind: str, *args: Any) -> None:
    consume = _rabbit_consume if kind == "rabbitmq" else _nats_consume
    asyncio.run(consume(*args))


async def _declare_rabbit(url: str, name: str) -> Callable[[], Awaitable[None]]:
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})

    async def drop() -> None:
        await channel.queue_delete(name)
        await connection.close()

    return drop


async def _publish_rabbit(url: str, name: str, messages: list[WireMessage]) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = channel.default_exchange

        def send(wire: WireMessage) -> Callable[[], Awaitable[object]]:
            body = aio_pika.Message(
                wire.body,
                headers=dict(wire.headers),
                content_type=wire.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            return lambda: exchange.publish(body, name)

        for start in range(0, len(messages), PUBLISH_BATCH):
            await confirm_all(send(m) for m in messages[start : start + PUBLISH_BATCH])


async def _declare_nats(url: str, name: str) -> Callable[[], Awaitable[None]]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(
        api.StreamConfig(name=name, subjects=[f"{name}.events"], storage=api.StorageType.FILE)
    )
    await js.add_consumer(
        name,
        api.ConsumerConfig(
            durable_name="bare",
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
        ),
    )

    async def drop() -> None:
        await js.delete_stream(name)
        await nc.close()

    return drop


async def _publish_nats(url: str, name: str, messages: list[WireMessage]) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()

        def send(index: int, wire: WireMessage) -> Callable[[], Awaitable[object]]:
            headers = {**wire.headers, "content-type": wire.content_type}
            headers["Nats-Msg-Id"] = f"bare-{index}"
            return lambda: js.publish(f"{name}.events", wire.body, headers=headers)

        for start in range(0, len(messages), PUBLISH_BATCH):
            batch = messages[start : start + PUBLISH_BATCH]
            await confirm_all(send(start + i, m) for i, m in enumerate(batch))
    finally:
        await nc.close()


async def bare_rate(
    kind: str, url: str, count: int, consumers: int, *, watch: Sequence[int] = ()
) -> BareResult:
    """Messages/s of a bare publish -> consume -> ack loop on ``kind`` (``rabbitmq`` or
    ``nats``) at ``url``, with ``consumers`` consumer processes, on names of its own;
    the CPU of the processes ``watch`` names is measured over the same time."""
    name = f"bench-bare-{uuid.uuid4().hex[:10]}"
    messages = [_wire(i) for i in range(count)]
    drop = await (_declare_rabbit if kind == "rabbitmq" else _declare_nats)(url, name)
    context = multiprocessing.get_context("spawn")
    acked = context.Value("q", 0)
    stop = context.Event()
    readies = [context.Event() for _ in range(consumers)]
    procs = [
        context.Process(target=_consumer_main, args=(kind, url, name, acked, ready, stop))
        for ready in readies
    ]
    try:
        for proc in procs:
            proc.start()
        for ready in readies:
            if not await asyncio.to_thread(ready.wait, 30):
                raise RuntimeError(f"a bare {kind} consumer did not start")
        consumer_cpu = cpu_seconds(p.pid for p in procs if p.pid is not None)
        watched = cpu_seconds(watch)
        began, cpu = time.perf_counter(), time.process_time()
        publish = _publish_rabbit if kind == "rabbitmq" else _publish_nats
        await publish(url, name, messages)
        publisher_cpu = time.process_time() - cpu
        deadline = began + 300
        while acked.value < count:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"bare {kind}: {acked.value} of {count} acked in 300 s")
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - began
        after = cpu_seconds(consumer_cpu)
        watched_after = cpu_seconds(watch)
        if acked.value != count:
            raise RuntimeError(f"bare {kind}: {acked.value} acks for {count} messages")
    finally:
        stop.set()
        for proc in procs:
            await asyncio.to_thread(proc.join, 10)
            if proc.is_alive():
                proc.kill()
        await drop()
    spent = sum(after[pid] - consumer_cpu[pid] for pid in after)
    watched_spent = sum(watched_after[pid] - watched[pid] for pid in watched)
    return BareResult(count / seconds, publisher_cpu, spent, watched_spent)
