"""The broker restarts during a burst; the store is PostgreSQL; nothing is lost.

A worker process consumes and relays a burst of 1,500 trip steps, each of which makes
billing publish a charge: 3,000 events through the broker. Mid-burst the broker goes
away and comes back (RabbitMQ: the shared node's application is stopped and started with
``rabbitmqctl``, restored in a ``finally`` whatever happens; NATS: a ``nats-server`` of
the test's own, SIGKILLed and started again on the same storage). The worker stays up,
reconnects, its relay publishes again what failed during the outage, and the test counts
from the outbox and the inboxes: every event relayed, every group's events applied
exactly once, in subject order (the duplicates that republishing and redelivery make are
absorbed by the inboxes).

Marked ``serial``: stopping the shared RabbitMQ disturbs any test using it meanwhile.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import Backend, NatsBackend, NatsServer, fresh_options, open_backend, unavailable
from tests.helpers import assert_eventually
from tests.integration.event_counts import (
    assert_applied_once,
    consumed,
    inbox_rows,
    publish_steps,
    subjects_of,
)
from tests.integration.event_flows import booking
from tests.integration.processes import WorkerProcesses
from tripwright.demo.job import spawn_worker
from tripwright.engine.store import create_store
from tripwright.flows.events import EventBus

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.serial]

SUBJECTS = 30
PER_SUBJECT = 50
#: Seconds the broker stays down.
DOWN = 3.0
#: A publish not confirmed within ``connect_timeout`` fails: shorter than the outage.
OPTIONS = {"ack_wait": 5.0, "max_deliver": 20, "connect_timeout": 2.0}


@dataclass
class Restartable:
    """A broker backend and how to take its server down and up again."""

    backend: Backend
    restart: Callable[[], Coroutine[Any, Any, None]]
    name: str


class RabbitApp:
    """The shared RabbitMQ node's application, stopped and started with ``rabbitmqctl``."""

    def __init__(self) -> None:
        self.stopped = False

    async def restart(self) -> None:
        await self._ctl("stop_app")
        self.stopped = True
        await asyncio.sleep(DOWN)
        await self.ensure_started()

    async def ensure_started(self) -> None:
        if self.stopped:
            await self._ctl("start_app")
            await self._ctl("await_startup")
            self.stopped = False

    async def _ctl(self, command: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            "rabbitmqctl", "-q", command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            unavailable("rabbitmqctl", f"{command} failed: {out.decode(errors='replace')}")


@pytest.fixture(
    params=[
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
async def restartable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Restartable]:
    """A broker the test may restart: the shared RabbitMQ, or a NATS server of its own."""
    groups = {group.name for group in booking.groups}
    topics = {topic for group in booking.groups for topic in group.topics}
    if request.param == "rabbitmq":
        if shutil.which("rabbitmqctl") is None:
            unavailable("rabbitmqctl", "not installed")
        app = RabbitApp()
        try:
            async with open_backend("rabbitmq", **OPTIONS) as backend:
                backend.groups.update(groups)
                backend.topics.update(topics)
                yield Restartable(backend, app.restart, "RabbitMQ")
                await app.ensure_started()  # before the clean-up needs it
        finally:
            await app.ensure_started()
        return
    server = NatsServer(tmp_path)
    await server.start()

    async def restart() -> None:
        server.kill()
        await asyncio.sleep(DOWN)
        await server.start()

    nats = NatsBackend(fresh_options(**OPTIONS), server.url)
    nats.groups.update(groups)
    nats.topics.update(topics)
    try:
        await nats.check()
        yield Restartable(nats, restart, "NATS")
        await nats.cleanup()
    finally:
        server.kill()


async def test_a_broker_restart_mid_burst_loses_nothing_and_applies_nothing_twice(
    restartable: Restartable, clean_pg_url: str, workers: WorkerProcesses
) -> None:
    """The broker goes down and up while a worker relays and consumes 3,000 events: the
    same worker reconnects and finishes; each event is relayed and applied once per group,
    in subject order, as counted from the outbox and the inboxes."""
    db_url = clean_pg_url
    store = create_store(db_url)
    await store.open()
    try:
        bus = EventBus(store, booking)
        subjects = subjects_of(SUBJECTS)
        ledger = workers.directory / "unused-ledger.db"
        workers.adopt(
            "worker",
            spawn_worker(
                db_url,
                "worker",
                ledger,
                lease_ttl=5.0,
                flows="tests.integration.event_flows:booking",
                broker=restartable.backend.url(),
            ),
        )
        third = PER_SUBJECT // 3
        await publish_steps(bus, subjects, range(third))

        async def flowing() -> bool:
            workers.assert_alive("worker")
            return await consumed(db_url) >= SUBJECTS * third

        await assert_eventually(flowing, timeout=60, interval=0.1)
        restart = asyncio.create_task(restartable.restart())
        # The rest of the burst is committed while the broker is away and comes back.
        for n in range(third, PER_SUBJECT):
            await publish_steps(bus, subjects, range(n, n + 1))
            await asyncio.sleep(0.1)
        await restart

        events = SUBJECTS * PER_SUBJECT

        async def all_handled() -> bool:
            workers.assert_alive("worker")
            return await consumed(db_url) >= inbox_rows(events)

        await assert_eventually(all_handled, timeout=120, interval=0.2)
        assert await workers.terminate("worker") == 0, workers.log("worker")
        log = workers.log("worker", tail=1_000_000)
        assert f"reconnected to {restartable.name}" in log, log[-3000:]
        assert "outbox relay failed, retrying" in log, "no publish met the outage"
        await assert_applied_once(store, db_url, subjects, PER_SUBJECT)
    finally:
        await store.close()
