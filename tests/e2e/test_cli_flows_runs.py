"""`tripwright flows ...` and `tripwright runs ...` end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.e2e import sample_flows
from tests.e2e.test_cli import run_cli
from tripwright.engine import Engine
from tripwright.engine.store import create_store, upgrade
from tripwright.loading import load_flows

FLOWS = "tests.e2e.sample_flows:definitions"
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


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


def _in_process(url: str, action: Callable[[Engine], Awaitable[T]]) -> T:
    async def body() -> T:
        store = create_store(url)
        await store.open()
        try:
            return await action(Engine(store, load_flows([FLOWS])))
        finally:
            await store.close()

    return asyncio.run(body())


def _run_due(url: str) -> None:
    async def work(engine: Engine) -> None:
        await engine.worker().run_until_idle()

    _in_process(url, work)


def test_run_control_refuses_bad_input_with_a_message_and_exit_code(tmp_path: Path) -> None:
    """Every `runs` command refuses an unknown run, and an action the run's status does
    not allow, with a message naming the problem and exit 1; bad options exit 2."""
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    upgrade(url)
    for command in ("show", "pause", "resume", "cancel", "retry", "resolve"):
        done = run_cli("runs", command, "nope", "--db", url, cwd=ROOT)
        assert (done.returncode, done.stdout) == (1, ""), command
        assert "no run 'nope'" in done.stderr, command
    (finished,) = _start_runs(url, 1)
    _run_due(url)
    refusals = {
        "pause": "cannot pause a completed run",
        "resume": "cannot resume a completed run",
        "cancel": "run is already completed",
        "retry": "only a failed run can be retried, not a completed one",
        "resolve": "can be resolved, not a completed one",
    }
    for command, message in refusals.items():
        done = run_cli("runs", command, finished, "--db", url, cwd=ROOT)
        assert done.returncode == 1, command
        assert message in done.stderr, command
    bad_options = {
        ("--status", "stuck"): "unknown status 'stuck'",
        ("--limit", "0"): "Invalid value for '--limit'",
    }
    for option, message in bad_options.items():
        done = run_cli("runs", "list", "--db", url, *option, cwd=ROOT)
        assert done.returncode == 2, option
        assert message in done.stderr, option


def test_runs_retry_and_resolve_act_on_a_saga_parked_for_an_operator(tmp_path: Path) -> None:
    """A saga parked after its pivot (a join that failed) is found by `runs list --status
    needs_attention`; `runs retry` runs the failed branch again, `runs resolve` goes on
    without it; both complete the saga."""
    url = f"sqlite:///{tmp_path / 'parked.db'}"
    upgrade(url)

    async def start(engine: Engine) -> list[str]:
        return [r.id for r in await engine.start_many("late", [None, None])]

    retried, resolved = _in_process(url, start)
    sample_flows.car_refused["on"] = True
    try:
        _run_due(url)
        listed = run_cli(
            "runs", "list", "--db", url, "--status", "needs_attention", "--json", cwd=ROOT
        )
        assert {json.loads(line)["id"] for line in listed.stdout.splitlines()} == {
            retried,
            resolved,
        }
        sample_flows.car_refused["on"] = False
        done = run_cli("runs", "retry", retried, "--db", url, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert "retry sent (saga.retry)" in done.stdout
        done = run_cli("runs", "resolve", resolved, "--db", url, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert "resolve sent (saga.resolve)" in done.stdout
        _run_due(url)
    finally:
        sample_flows.car_refused["on"] = True

    async def results(engine: Engine) -> dict[str, Any]:
        return {i: (await engine.get(i)).result["results"]["extras"] for i in (retried, resolved)}

    extras = _in_process(url, results)
    assert extras == {
        retried: {"car": "extras/car", "insurance": "extras/insurance"},
        resolved: {"insurance": "extras/insurance"},
    }
    again = run_cli("runs", "resolve", retried, "--db", url, cwd=ROOT)
    assert again.returncode == 1
    assert "not a completed one" in again.stderr


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
