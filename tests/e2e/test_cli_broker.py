"""`tripwright worker --broker URL` with a broker it cannot use: a clear message, exit 1.

Unreachable brokers need no server; wrong credentials are refused by the shared RabbitMQ
and by a NATS server of the test's own that requires a user and password.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.brokers import AMQP_URL, NatsServer, RabbitBackend, fresh_options
from tests.e2e.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
FLOWS = "tests.e2e.sample_events:booking"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _worker(broker: str, db: str) -> tuple[int, str]:
    done = run_cli("worker", "--flows", FLOWS, "--db", db, "--broker", broker, cwd=ROOT, timeout=60)
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("amqp://guest:secret@127.0.0.1:{port}/", "RabbitMQ at amqp://guest:***@127.0.0.1:{port}/"),
        ("nats://127.0.0.1:{port}", "NATS at nats://127.0.0.1:{port}"),
    ],
    ids=["rabbitmq", "nats"],
)
def test_an_unreachable_broker_stops_the_worker_with_a_message(
    scheme: str, expected: str, sqlite_url: str
) -> None:
    """Nothing listens on the broker's port: the worker says so and exits 1."""
    port = _free_port()
    code, stderr = _worker(scheme.format(port=port), sqlite_url)
    text = " ".join(stderr.split())
    assert code == 1, stderr
    assert f"error: {expected.format(port=port)} is unreachable (connecting)" in text
    assert "secret" not in stderr
    assert "Traceback" not in stderr


@pytest.mark.rabbitmq
def test_rabbitmq_refusing_the_credentials_stops_the_worker(sqlite_url: str) -> None:
    """Wrong RabbitMQ credentials: the worker says they were refused (password hidden)."""
    asyncio.run(RabbitBackend(fresh_options()).check())  # fails in CI, skips elsewhere
    url = AMQP_URL.replace("guest:guest@", "guest:not-the-password@")
    code, stderr = _worker(url, sqlite_url)
    text = " ".join(stderr.split())
    assert code == 1, stderr
    assert "refused the credentials (connecting)" in text
    assert "not-the-password" not in stderr
    assert "Traceback" not in stderr


def test_nats_refusing_the_credentials_stops_the_worker(tmp_path: Path, sqlite_url: str) -> None:
    """A NATS server that wants a user and password refuses others: the worker says so."""
    server = NatsServer(tmp_path, port=_free_port())
    asyncio.run(server.start("--user", "tripwright", "--pass", "right"))
    try:
        code, stderr = _worker(f"nats://tripwright:wrong@127.0.0.1:{server.port}", sqlite_url)
    finally:
        server.kill()
    text = " ".join(stderr.split())
    assert code == 1, stderr
    assert f"NATS at nats://tripwright:***@127.0.0.1:{server.port} refused the credentials" in text
    assert "wrong" not in stderr
    assert "Traceback" not in stderr
