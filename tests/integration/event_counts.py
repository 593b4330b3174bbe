"""Bursts of trip steps for the booking choreography (``tests.integration.event_flows``)
and what it left in a store, counted from the outside: the outbox, the inboxes and the
handlers' mailbox state."""

from __future__ import annotations

import sqlite3
from typing import Any

import asyncpg

from tests.integration.event_flows import TripStep, audit, billing
from tripwright.engine.store import Store
from tripwright.flows.events import EventBus


def subjects_of(count: int) -> list[str]:
    """``count`` trip ids."""
    return [f"T{s:03d}" for s in range(count)]


async def publish_steps(bus: EventBus, subjects: list[str], numbers: range) -> None:
    """Commit trip steps ``numbers`` of every subject to the outbox, step by step (ids
    ``<subject>-<n>``)."""
    steps = [TripStep(trip_id=t, n=n) for n in numbers for t in subjects]
    await bus.publish_many(
        steps, subjects=[e.trip_id for e in steps], ids=[f"{e.trip_id}-{e.n}" for e in steps]
    )


async def scalar(db_url: str, sql: str) -> Any:
    """The first column of the first row of ``sql`` on either store."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.split("///", 1)[1])
        try:
            return conn.execute(sql).fetchone()[0]
        finally:
            conn.close()
    pg = await asyncpg.connect(db_url)
    try:
        return await pg.fetchval(sql)
    finally:
        await pg.close()


async def consumed(db_url: str) -> int:
    """Inbox rows whose event has been handled."""
    return int(await scalar(db_url, "SELECT count(*) FROM run_events WHERE status='consumed'"))


def inbox_rows(events: int) -> int:
    """Inbox rows once ``events`` trip steps are handled: billing and audit get each step,
    audit each charge billing publishes for it."""
    return 3 * events


async def assert_applied_once(
    store: Store,
    db_url: str,
    subjects: list[str],
    per_subject: int,
    *,
    steps_in_outbox: bool = True,
) -> None:
    """Every trip step (ids ``<subject>-<n>``) and its charge was relayed once, and each
    group applied each of its events exactly once, in subject order; no dead letters.
    ``steps_in_outbox=False``: the steps reached the broker without the outbox."""
    events = len(subjects) * per_subject
    # The outbox: the steps and one charge per step, all relayed, none twice.
    assert await store.outbox_count() == (2 if steps_in_outbox else 1) * events
    assert await store.outbox_count(published=False) == 0
    charges = await scalar(
        db_url, "SELECT count(DISTINCT event_id) FROM outbox WHERE type='payment.charged'"
    )
    assert charges == events
    # The inboxes: each group applied each of its events once, in subject order.
    assert await scalar(db_url, "SELECT count(*) FROM run_events") == inbox_rows(events)
    assert await consumed(db_url) == inbox_rows(events)
    for subject in subjects:
        expected = [f"{subject}-{n}" for n in range(per_subject)]
        assert expected == (await store.get_run(billing.mailbox(subject))).context["handled"]
        audited = (await store.get_run(audit.mailbox(subject))).context
        assert expected == audited["trip.step"]
        assert len(set(audited["payment.charged"])) == per_subject
        assert len(audited["payment.charged"]) == per_subject
    assert await store.list_dead_letters() == []
