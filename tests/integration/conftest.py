"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.brokers import Backend, open_backend
from tests.integration.event_flows import booking
from tests.integration.processes import WorkerProcesses


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty store URL, once per store kind."""
    name = "sqlite_url" if request.param == "sqlite" else "clean_pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerProcesses]:
    """Tracks worker processes; none outlives the test, whatever happens."""
    procs = WorkerProcesses(tmp_path)
    try:
        yield procs
    finally:
        procs.kill_all()


@pytest.fixture(
    params=[
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """A real broker on names of this test's own, once per broker, cleaned up afterwards;
    it knows the groups and topics of ``tests.integration.event_flows:booking``."""
    async with open_backend(request.param, ack_wait=5.0) as made:
        made.groups.update(group.name for group in booking.groups)
        made.topics.update(topic for group in booking.groups for topic in group.topics)
        yield made
