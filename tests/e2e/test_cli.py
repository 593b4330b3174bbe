"""The command line, end to end, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "tripwright"]


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("TRIPWRIGHT_DB", None)
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_db_upgrade_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    """`db upgrade` creates the schema on a new SQLite file and can run again."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    first = run_cli("db", "upgrade", "--db", url, cwd=tmp_path)
    again = run_cli("db", "upgrade", "--db", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout


def test_bad_store_url_is_a_clear_error(tmp_path: Path) -> None:
    """An unsupported store URL exits non-zero with a message naming the problem."""
    done = run_cli("db", "upgrade", "--db", "mysql://x/y", cwd=tmp_path)
    assert done.returncode == 1
    assert "unsupported store URL scheme 'mysql'" in done.stderr


def test_worker_refuses_unknown_flows_module(tmp_path: Path) -> None:
    """A worker given a flows reference that does not import exits 2 and says why."""
    done = run_cli("worker", "--flows", "no_such_module:flows", cwd=tmp_path)
    assert done.returncode == 2
    assert "cannot import 'no_such_module'" in done.stderr


def test_worker_on_an_unmigrated_database_says_to_upgrade(tmp_path: Path) -> None:
    """A worker started on a database without the schema points at `db upgrade`."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    done = run_cli("worker", "--db", url, "--flows", "tripwright.demo.flow:flows", cwd=tmp_path)
    assert done.returncode == 1
    assert "tripwright db upgrade" in done.stderr


def test_runs_show_unknown_run_fails_cleanly(tmp_path: Path) -> None:
    """`runs show` of a run that does not exist exits 1 with the run id in the message."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert run_cli("db", "upgrade", "--db", url, cwd=tmp_path).returncode == 0
    done = run_cli("runs", "show", "nope", "--db", url, cwd=tmp_path)
    assert done.returncode == 1
    assert "no run 'nope'" in done.stderr


@pytest.mark.slow
def test_demo_survives_a_killed_worker(tmp_path: Path) -> None:
    """`tripwright demo` kills a worker mid-way and still proves every guarantee."""
    done = run_cli(
        "demo",
        "--runs",
        "40",
        "--lease-ttl",
        "1",
        "--work-dir",
        str(tmp_path / "demo"),
        cwd=tmp_path,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: a killed worker lost nothing" in done.stdout
    assert "200 / 200" in done.stdout
