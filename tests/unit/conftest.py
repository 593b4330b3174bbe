"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from tests.statechart_helpers import MODES


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """How a statechart runner runs: plainly, or restored from a snapshot after every step."""
    return str(request.param)
