"""Worker processes on a real broker (RabbitMQ, NATS JetStream) and PostgreSQL.

Two consumer processes in one group keep each subject in order, also across a hand-over
from one to the other; a consumer SIGKILLed with messages unacknowledged (some of them
already committed in its inbox) loses none and applies none twice. Counted from the
outbox, the inboxes and the handlers' state in the store.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.brokers import Backend
from tests.helpers import assert_eventually
from tests.integration.event_counts import (
    assert_applied_once,
    consumed,
    inbox_rows,
    publish_steps,
    scalar,
    subjects_of,
)
from tests.integration.event_flows import TripStep, booking
from tests.integration.processes import WorkerProcesses
from tripwright.bus import OutgoingMessage
from tripwright.demo.job import spawn_worker
from tripwright.engine.store import Store, create_store
from tripwright.flows.events import EventBus

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

FLOWS_REF = "tests.integration.event_flows:booking"
LEASE_TTL = 1.5
SUBJECTS = 20
PER_SUBJECT = 10


def _worker(workers: WorkerProcesses, name: str, db_url: str, broker: Backend) -> None:
    ledger = workers.directory / "unused-ledger.db"
    workers.adopt(
        name,
        spawn_worker(
            db_url, name, ledger, lease_ttl=LEASE_TTL, flows=FLOWS_REF, broker=broker.url()
        ),
    )


async def _all_handled(db_url: str, workers: WorkerProcesses, name: str, events: int) -> None:
    async def done() -> bool:
        workers.assert_alive(name)
        return await consumed(db_url) >= inbox_rows(events)

    await assert_eventually(done, timeout=90, interval=0.2)


async def _open(db_url: str) -> Store:
    store = create_store(db_url)
    await store.open()
    return store


async def test_two_consumer_processes_keep_each_subject_in_order(
    broker: Backend, clean_pg_url: str, workers: WorkerProcesses
) -> None:
    """Workers A and B consume one group; A shuts down mid-burst (draining what it holds)
    and the rest of each subject's steps, published after A exited, reach B: every
    subject's steps are handled once each, in publish order, by both groups."""
    db_url = clean_pg_url
    store = await _open(db_url)
    try:
        bus = EventBus(store, booking)
        subjects = subjects_of(SUBJECTS)
        half = PER_SUBJECT // 2
        _worker(workers, "worker-A", db_url, broker)
        _worker(workers, "worker-B", db_url, broker)
        await publish_steps(bus, subjects, range(half))

        async def a_is_mid_way() -> bool:
            workers.assert_alive()
            return await consumed(db_url) >= inbox_rows(SUBJECTS * half) // 3

        await assert_eventually(a_is_mid_way, timeout=60, interval=0.1)
        assert await workers.terminate("worker-A") == 0, workers.log("worker-A")
        await publish_steps(bus, subjects, range(half, PER_SUBJECT))

        await _all_handled(db_url, workers, "worker-B", SUBJECTS * PER_SUBJECT)
        assert await workers.terminate("worker-B") == 0, workers.log("worker-B")
        await assert_applied_once(store, db_url, subjects, PER_SUBJECT)
    finally:
        await store.close()


async def test_a_consumer_sigkilled_with_unacknowledged_messages_loses_none(
    broker: Backend, clean_pg_url: str, workers: WorkerProcesses, tmp_path: Path
) -> None:
    """A consumer process commits a few batches, then holds the next ones committed but
    unacknowledged and is SIGKILLed; a worker started after it gets every message again
    from the broker: each step and charge is applied once, the held ones included."""
    db_url = clean_pg_url
    report = tmp_path / "held.json"
    workers.spawn_module(
        "stalling", "tests.integration.stalling_consumer", db_url, broker.url(), str(report), "3"
    )
    store = await _open(db_url)
    producer = broker.make()
    try:
        await producer.connect()
        subjects = subjects_of(SUBJECTS)

        async def subscribed() -> bool:
            workers.assert_alive("stalling")
            return await asyncio.to_thread(report.with_suffix(".ready").exists)

        await assert_eventually(subscribed, timeout=30, interval=0.2)
        # Published straight to the broker, as another service would: the outbox stays
        # the handlers' own, relayed by the worker that finishes.
        await producer.publish(
            [
                OutgoingMessage(
                    TripStep.topic,
                    TripStep(trip_id=t, n=n).envelope(source="/test", subject=t, id=f"{t}-{n}"),
                )
                for n in range(PER_SUBJECT)
                for t in subjects
            ]
        )

        async def holding() -> bool:
            workers.assert_alive("stalling")
            return await asyncio.to_thread(report.exists)

        await workers.kill_when("stalling", holding)
        held = json.loads(await asyncio.to_thread(report.read_text))
        assert held, "the consumer held nothing when it was killed"
        events = SUBJECTS * PER_SUBJECT
        in_inbox = await scalar(db_url, "SELECT count(*) FROM run_events")
        assert 0 < in_inbox < 2 * events, "the consumer took all or nothing before it died"

        _worker(workers, "worker-B", db_url, broker)
        await _all_handled(db_url, workers, "worker-B", events)
        assert await workers.terminate("worker-B") == 0, workers.log("worker-B")
        # Only the handlers' charges went through the outbox here.
        await assert_applied_once(store, db_url, subjects, PER_SUBJECT, steps_in_outbox=False)
    finally:
        await producer.close()
        await store.close()
