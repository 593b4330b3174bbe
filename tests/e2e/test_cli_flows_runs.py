"""`tripwright flows ...` and `tripwright runs ...` end to end."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.e2e.test_cli import run_cli
from tripwright.engine import Engine
from tripwright.engine.store import create_store, upgrade
from tripwright.loading import load_flows

FLOWS = "tests.e2e.sample_flows:definitions"
ROOT = Path(__file__).resolve().parents[2]


def test_flows_list_shows_models_and_steps() -> None:
    """`flows list` names each definition with its model and steps."""
    done = run_cli("flows", "list", "--flows", FLOWS, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "trip" in done.stdout
    assert "sequence" in done.stdout
    assert "flight, extras, ticket" in done.stdout


def test_flows_validate_reports_warnings_and_ok() -> None:
    """`flows validate` prints warnings for risky sagas and ok for sound definitions."""
    done = run_cli("flows", "validate", "--flows", FLOWS, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "risky: warning: hold: side-effecting step before the pivot" in done.stdout
    assert "ping: ok" in done.stdout
    assert "extras/insurance" in done.stdout


def test_flows_diagram_prints_mermaid() -> None:
    """`flows diagram` prints a Mermaid flowchart; an unknown name exits 2."""
    done = run_cli("flows", "diagram", "trip", "--flows", FLOWS, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("flowchart TD")
    assert "flight -.-> flight_undo" in done.stdout
    missing = run_cli("flows", "diagram", "nope", "--flows", FLOWS, cwd=ROOT)
    assert missing.returncode == 2
    assert "unknown flow 'nope'" in missing.stderr


def _start_runs(url: str, n: int) -> list[str]:
    async def body() -> list[str]:
        store = create_store(url)
        await store.open()
        try:
            engine = Engine(store, load_flows([FLOWS]))
            runs = await engine.start_many("ping", [None] * n, correlation_id="trip-9")
            return [r.id for r in runs]
        finally:
            await store.close()

    return asyncio.run(body())


def test_runs_can_be_listed_paused_resumed_and_cancelled(tmp_path: Path) -> None:
    """`runs list/pause/resume/cancel/show` act on the database and report the status."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade(url)
    first, second = _start_runs(url, 2)
    listed = run_cli("runs", "list", "--db", url, "--json", "--correlation", "trip-9", cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    assert {json.loads(line)["id"] for line in listed.stdout.splitlines()} == {first, second}
    paused = run_cli("runs", "pause", first, "--db", url, cwd=ROOT)
    assert "now paused" in paused.stdout
    again = run_cli("runs", "pause", first, "--db", url, cwd=ROOT)
    assert again.returncode == 1
    assert "cannot pause a paused run" in again.stderr
    assert "now pending" in run_cli("runs", "resume", first, "--db", url, cwd=ROOT).stdout
    assert "now cancelled" in run_cli("runs", "cancel", second, "--db", url, cwd=ROOT).stdout
    shown = run_cli("runs", "show", second, "--db", url, cwd=ROOT)
    kinds = [entry["kind"] for entry in json.loads(shown.stdout)["journal"]]
    assert kinds == ["run_created", "run_cancelled"]
    retry = run_cli("runs", "retry", second, "--db", url, cwd=ROOT)
    assert retry.returncode == 1
    assert "only a failed run can be retried" in retry.stderr
    bad = run_cli("runs", "list", "--db", url, "--status", "bogus", cwd=ROOT)
    assert bad.returncode == 2
    assert "unknown status 'bogus'" in bad.stderr


def test_runs_cancel_with_flows_runs_the_saga_clean_up(tmp_path: Path) -> None:
    """`runs cancel --flows` sends a saga through its compensation instead of stopping it."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(url)

    async def start() -> str:
        store = create_store(url)
        await store.open()
        try:
            return (await Engine(store, load_flows([FLOWS])).start("trip")).id
        finally:
            await store.close()

    run_id = asyncio.run(start())
    done = run_cli("runs", "cancel", run_id, "--db", url, "--flows", FLOWS, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "cancelling (clean-up running): now running" in done.stdout
    shown = json.loads(run_cli("runs", "show", run_id, "--db", url, cwd=ROOT).stdout)
    assert shown["step"] == "saga:compensate"
    assert shown["journal"][-1]["kind"] == "cancel_requested"


def test_runs_show_describes_a_waiting_saga(tmp_path: Path) -> None:
    """`runs show --flows` prints the run's status, saga position, context and its next
    timer (a hold's deadline); without --flows the position is the engine step."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(url)

    async def start_and_wait() -> str:
        store = create_store(url)
        await store.open()
        try:
            engine = Engine(store, load_flows([FLOWS]))
            run = await engine.start("held")
            await engine.worker().run_until_idle()
            return run.id
        finally:
            await store.close()

    run_id = asyncio.run(start_and_wait())
    done = run_cli("runs", "show", run_id, "--db", url, "--flows", FLOWS, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["status"], shown["step"]) == ("waiting", "step:payment")
    assert shown["position"]["model"] == "sequence"
    assert shown["position"]["at"] == ["payment"]
    assert shown["position"]["details"]["phase"] == "waiting"
    assert shown["next_timer"]["name"] == "deadline:fare"
    assert shown["next_timer"]["at"] == shown["position"]["details"]["holds"]["fare"]
    assert shown["waiting_for"] == ["paid", "deadline:fare"]
    assert shown["context"]["results"] == {"fare": "fare"}
    bare = json.loads(run_cli("runs", "show", run_id, "--db", url, "--no-journal", cwd=ROOT).stdout)
    assert bare["position"] == {"model": "engine", "at": ["step:payment"], "details": {}}
    assert "journal" not in bare
