"""The README's examples run as printed: the engine example, and the broker section's
choreography, publisher and worker commands on each broker."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.brokers import open_backend
from tests.helpers import assert_eventually, run_python

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_example_runs(tmp_path: Path) -> None:
    """The engine example in the README completes and prints the paid context."""
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    done = run_python(code.group(1), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "'paid': True" in done.stdout


def _broker_section() -> str:
    text = README.read_text()
    start = text.index("## Workers on PostgreSQL with a broker")
    return text[start : text.index("\n## ", start + 1)]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def _commands(block: str) -> list[str]:
    """The command lines of a shell block (continuations joined, comments dropped)."""
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and line[0] != "#"]


def _argv(command: str, db: str, broker: str) -> tuple[dict[str, str], list[str]]:
    """A README command as environment and arguments, on the test's database and broker
    names; ``tripwright`` and ``python`` are this interpreter."""
    words = shlex.split(command.replace(README_DB, db))
    env = {}
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if words[0] == "tripwright":
        words[:1] = [sys.executable, "-m", "tripwright"]
    elif words[0] == "python":
        words[0] = sys.executable
    if "--broker" in words:
        words[words.index("--broker") + 1] = broker
    return env, words


README_DB = "postgresql://postgres@127.0.0.1/tripwright"


def _run(env: dict[str, str], argv: list[str], cwd: Path) -> None:
    done = subprocess.run(
        argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()


def _spawn(env: dict[str, str], argv: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=out)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize(
    "broker_name",
    [
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("nats", marks=pytest.mark.nats),
    ],
)
async def test_readme_broker_workers_run_as_printed(
    broker_name: str, clean_pg_url: str, tmp_path: Path
) -> None:
    """The README's choreography, publisher and commands, on the test's own database and
    broker names: the worker for the broker relays the published event over it and the
    handler prints its line; it stops cleanly on SIGTERM."""
    section = _broker_section()
    for code in _blocks(section, "python"):
        name = code.splitlines()[0].removeprefix("# ").strip()
        (tmp_path / name).write_text(code.replace(README_DB, clean_pg_url))
    upgrade, publish, *workers = _commands(_blocks(section, "sh")[0])
    scheme = {"rabbitmq": "amqp://", "nats": "nats://"}[broker_name]
    [worker] = [c for c in workers if f"--broker {scheme}" in c]
    async with open_backend(broker_name) as backend:
        backend.groups.add("billing")
        backend.topics.add("trip")
        for command in (upgrade, publish):
            await asyncio.to_thread(_run, *_argv(command, clean_pg_url, backend.url()), tmp_path)
        log = tmp_path / "worker.log"
        proc = _spawn(*_argv(worker, clean_pg_url, backend.url()), tmp_path, log)
        try:

            async def charged() -> bool:
                assert proc.poll() is None, log.read_text()
                return "charged T-1" in log.read_text()

            await assert_eventually(charged, timeout=60, interval=0.2)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
