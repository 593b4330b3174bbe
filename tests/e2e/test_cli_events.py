"""`tripwright flows ...` for choreographies and `tripwright dlq ...`, end to end."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.e2e.sample_events import TripConfirmed, booking
from tests.e2e.test_cli import run_cli
from tripwright.engine import Engine, EngineConfig
from tripwright.engine.store import create_store, upgrade
from tripwright.flows.events import EventBus

ROOT = Path(__file__).resolve().parents[2]
BOOKING = "tests.e2e.sample_events:booking"
LOOPING = "tests.e2e.sample_events:looping"


def test_flows_list_shows_the_events_model() -> None:
    """`flows list` shows a choreography with model `events` and its handlers."""
    done = run_cli("flows", "list", "--flows", BOOKING, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "events" in done.stdout
    assert "billing.capture" in done.stdout


def test_flows_validate_checks_choreographies() -> None:
    """A sound choreography validates; one with an endless cycle and an orphan
    subscription exits 1 naming both; an unconsumed event is a warning."""
    sound = run_cli("flows", "validate", "--flows", BOOKING, cwd=ROOT)
    assert sound.returncode == 0, sound.stdout + sound.stderr
    assert "'ticket.issued' is published but nobody consumes it" in sound.stdout
    bad = run_cli("flows", "validate", "--flows", LOOPING, cwd=ROOT)
    assert bad.returncode == 1
    assert "cycle with no end: loop.ping -> loop.pong" in bad.stdout
    assert "subscribes to 'orphan.waiting', which nobody publishes" in bad.stdout


def test_flows_diagram_draws_producers_types_and_groups() -> None:
    """`flows diagram` draws producer -> event type -> consumer group as Mermaid."""
    done = run_cli("flows", "diagram", "booking", "--flows", BOOKING, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("flowchart LR")
    assert 'subgraph g0["group billing"]' in done.stdout
    assert '(["payment.captured v2"])' in done.stdout
    assert "external --> t" in done.stdout
    assert "-. publishes .->" in done.stdout


async def _dead_letter_one(url: str) -> None:
    await asyncio.to_thread(upgrade, url)
    store = create_store(url)
    async with store:
        bus = EventBus(store, booking)
        engine = Engine(store, bus.registry, config=EngineConfig(poll_interval=0.01))
        await bus.publish(TripConfirmed(trip_id="bad-1"), subject="bad-1", id="e-bad")
        async with bus.running(engine):
            for _ in range(500):
                if await store.list_dead_letters():
                    break
                await asyncio.sleep(0.01)


def test_dlq_list_redrive_and_drop(tmp_path: Path) -> None:
    """`dlq list` shows a dead letter; `redrive` requeues it once; `drop` and an unknown
    id are handled with clear messages."""
    url = f"sqlite:///{tmp_path / 'dlq.db'}"
    asyncio.run(_dead_letter_one(url))
    listed = run_cli("dlq", "list", "--db", url, "--json", cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    [letter] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (
        letter["group"],
        letter["handler"],
        letter["event_id"],
    ) == ("billing", "capture", "e-bad")
    redriven = run_cli("dlq", "redrive", str(letter["id"]), "--db", url, cwd=ROOT)
    assert redriven.returncode == 0, redriven.stderr
    assert "redriven" in redriven.stdout
    again = run_cli("dlq", "redrive", str(letter["id"]), "--db", url, cwd=ROOT)
    assert again.returncode == 2
    assert f"no dead letter {letter['id']}" in again.stderr
    asyncio.run(_dead_letter_one(url))  # the redriven event fails again: a new letter
    relisted = run_cli("dlq", "list", "--db", url, "--json", cwd=ROOT).stdout
    [fresh] = [json.loads(line) for line in relisted.splitlines()]
    assert fresh["event_id"] == "e-bad"
    dropped = run_cli("dlq", "drop", str(fresh["id"]), "--db", url, cwd=ROOT)
    assert dropped.returncode == 0, dropped.stderr
    assert run_cli("dlq", "list", "--db", url, "--json", cwd=ROOT).stdout == ""
