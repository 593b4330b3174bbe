"""Broker test backends: one per transport, each test on names of its own.

``BACKENDS`` names the transports the contract suite runs on. A backend builds a
transport for one test (a fresh prefix, so runs never collide), injects raw bodies as
another system would, and deletes what the test declared. A broker that is down fails
the test in CI (``CI=true``) and skips it elsewhere, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from pathlib import Path
from urllib.parse import urlencode

import aio_pika
import pytest

from tripwright.bus import MemoryTransport, Transport
from tripwright.bus.nats import NatsTransport
from tripwright.bus.options import BrokerOptions, partition_of
from tripwright.bus.rabbitmq import RabbitMQTransport
from tripwright.errors import TransportError

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
AMQP_URL = os.environ.get("TRIPWRIGHT_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("TRIPWRIGHT_NATS_URL", "nats://127.0.0.1:4222")


def unavailable(server: str, reason: str) -> None:
    """Fail in CI, skip elsewhere: ``server`` cannot be reached."""
    if IN_CI:
        pytest.fail(f"{server} is required in CI but unreachable: {reason}")
    pytest.skip(f"{server} unreachable ({reason})")


def fresh_options(**changes: object) -> BrokerOptions:
    """Options with a prefix of this test's own and short timeouts."""
    base = BrokerOptions(
        partitions=4, prefix=f"twt-{uuid.uuid4().hex[:10]}", max_deliver=3, ack_wait=2.0
    )
    return replace(base, **changes)  # type: ignore[arg-type]


class Backend(ABC):
    """A transport under test, with what the tests need around it."""

    name: str

    def __init__(self, options: BrokerOptions) -> None:
        self.options = options
        self.made: list[Transport] = []
        self.groups: set[str] = set()
        self.topics: set[str] = set()

    def make(self) -> Transport:
        """A new transport on this test's names (one per simulated process)."""
        transport = self._build()
        self.made.append(transport)
        return transport

    @abstractmethod
    def _build(self) -> Transport: ...

    def url(self) -> str:
        """The broker URL, this test's options in its query, for ``tripwright worker``."""
        raise NotImplementedError(f"{self.name} lives in one process")

    def _with_options(self, base: str) -> str:
        options = asdict(self.options)
        keep = ("partitions", "prefix", "max_deliver", "ack_wait", "connect_timeout")
        return f"{base}?{urlencode({k: options[k] for k in keep})}"

    async def check(self) -> None:
        """Fail or skip unless the server is up (the in-process one needs none)."""
        return None

    @abstractmethod
    async def put_raw(self, transport: Transport, group: str, topic: str, body: bytes) -> None:
        """Put a raw body on ``group``'s queue as a foreign publisher would."""

    async def abandon(self, transport: Transport) -> None:
        """Drop the connection as a dying process would: nothing in flight is settled."""
        raise NotImplementedError(f"{self.name} never loses messages to a dead consumer")

    async def cleanup(self) -> None:
        """Close every transport made and delete what the test declared."""
        for transport in self.made:
            await transport.close()


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self, options: BrokerOptions) -> None:
        super().__init__(options)
        self.shared = MemoryTransport()

    def _build(self) -> Transport:
        return self.shared  # in-process: every "process" shares the one broker

    async def put_raw(self, transport: Transport, group: str, topic: str, body: bytes) -> None:
        self.shared.put_raw(group, topic, "raw", body)


class RabbitBackend(Backend):
    name = "rabbitmq"

    def _build(self) -> Transport:
        return RabbitMQTransport(AMQP_URL, self.options)

    def url(self) -> str:
        return self._with_options(AMQP_URL)

    async def check(self) -> None:
        try:
            connection = await aio_pika.connect(AMQP_URL, timeout=3)
            await connection.close()
        except (OSError, aio_pika.exceptions.AMQPException, TimeoutError) as exc:
            unavailable("RabbitMQ", str(exc))

    async def put_raw(self, transport: Transport, group: str, topic: str, body: bytes) -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(f"{self.options.prefix}.events")
            key = f"{topic}.{partition_of('raw', self.options.partitions)}"
            await exchange.publish(aio_pika.Message(body), key)

    async def abandon(self, transport: Transport) -> None:
        assert isinstance(transport, RabbitMQTransport)
        connection = transport._connection
        assert connection is not None
        transport._connection = None  # the transport no longer closes anything cleanly
        transport._subscriptions.clear()
        await connection.close()

    async def cleanup(self) -> None:
        await super().cleanup()
        transport = RabbitMQTransport(AMQP_URL, self.options)
        try:
            await transport.connect()
            for group in self.groups:
                await transport.delete_group(group)
            connection = await aio_pika.connect(AMQP_URL)
            async with connection:
                channel = await connection.channel()
                for name in ("events", "dead"):
                    await channel.exchange_delete(f"{self.options.prefix}.{name}")
        finally:
            await transport.close()


class NatsBackend(Backend):
    name = "nats"

    def __init__(self, options: BrokerOptions, server: str = NATS_URL) -> None:
        super().__init__(options)
        self.server = server

    def _build(self) -> Transport:
        return NatsTransport(self.server, self.options)

    def url(self) -> str:
        return self._with_options(self.server)

    async def check(self) -> None:
        probe = NatsTransport(self.server, self.options)
        try:
            await asyncio.wait_for(probe.connect(), 10)
        except (TransportError, TimeoutError) as exc:
            unavailable("NATS JetStream", str(exc))
        finally:
            await probe.close()

    async def put_raw(self, transport: Transport, group: str, topic: str, body: bytes) -> None:
        assert isinstance(transport, NatsTransport)
        js = transport._live()
        subject = transport.subject(topic, partition_of("raw", self.options.partitions))
        await js.publish(subject, body)

    async def abandon(self, transport: Transport) -> None:
        assert isinstance(transport, NatsTransport)
        nc = transport._nc
        assert nc is not None
        transport._nc = transport._js = None
        transport._subscriptions.clear()
        await nc.close()

    async def cleanup(self) -> None:
        await super().cleanup()
        transport = NatsTransport(self.server, self.options)
        try:
            await transport.connect()
            for topic in self.topics:
                await transport.delete_topic(topic)
        finally:
            await transport.close()


BACKENDS: dict[str, type[Backend]] = {
    "memory": MemoryBackend,
    "rabbitmq": RabbitBackend,
    "nats": NatsBackend,
}


@contextlib.asynccontextmanager
async def open_backend(name: str, **changes: object) -> AsyncIterator[Backend]:
    """A backend on names of its own (``fresh_options(**changes)``), checked to be up, and
    cleaned up afterwards."""
    made = BACKENDS[name](fresh_options(**changes))
    await made.check()
    try:
        yield made
    finally:
        await made.cleanup()


class NatsServer:
    """A ``nats-server -js`` of the test's own, on its own port and storage directory,
    which the test kills and starts again (the shared server is never touched)."""

    BINARY = "/usr/sbin/nats-server"

    def __init__(self, directory: Path, port: int = 14222) -> None:
        self.directory = directory
        self.port = port
        self.url = f"nats://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, *args: str) -> None:
        """Start it (extra ``args`` such as ``--user``) and wait until it accepts."""
        proc = self._spawn(args)
        for _ in range(200):
            if proc.poll() is not None:
                unavailable("nats-server", f"exited with {proc.returncode} on start")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            await asyncio.sleep(0.05)
        unavailable("nats-server", f"not accepting on port {self.port}")

    def _spawn(self, args: tuple[str, ...]) -> subprocess.Popen[bytes]:
        if not os.path.exists(self.BINARY):
            unavailable("nats-server", f"{self.BINARY} is not installed")
        store = str(self.directory / "store")
        with open(self.directory / "nats-server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.BINARY, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", store, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self.proc

    def kill(self) -> None:
        """SIGKILL it: nothing is flushed or said goodbye to."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
