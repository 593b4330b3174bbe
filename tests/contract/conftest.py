"""The ``backend`` fixture: each contract test once per transport."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.brokers import Backend, open_backend


@pytest.fixture(
    params=[
        "memory",
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """A transport backend on names of this test's own, cleaned up afterwards."""
    async with open_backend(request.param) as made:
        yield made
