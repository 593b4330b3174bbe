"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
