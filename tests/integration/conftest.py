"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.processes import WorkerProcesses


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerProcesses]:
    """Tracks worker processes; none outlives the test, whatever happens."""
    procs = WorkerProcesses(tmp_path)
    try:
        yield procs
    finally:
        procs.kill_all()
