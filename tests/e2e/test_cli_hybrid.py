"""`tripwright flows list | validate | diagram` for hybrids, end to end."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
TRIP = "tests.e2e.sample_hybrid:trip"
MISWIRED = "tests.e2e.sample_hybrid:miswired"


def test_flows_list_shows_a_hybrid_with_its_parts() -> None:
    """`flows list` shows the hybrid as model `hybrid`, with its states, saga and group."""
    done = run_cli("flows", "list", "--flows", TRIP, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    [row] = [line for line in done.stdout.splitlines() if " trip " in line]
    assert "hybrid" in row
    assert "saga book_providers" in row
    assert "group notifier" in row


def test_flows_validate_checks_the_wiring() -> None:
    """The trip hybrid validates; the miswired one exits 1 naming the unknown saga."""
    sound = run_cli("flows", "validate", "--flows", TRIP, cwd=ROOT)
    assert (sound.returncode, sound.stdout.strip()) == (0, "trip: ok"), sound.stderr
    bad = run_cli("flows", "validate", "--flows", MISWIRED, cwd=ROOT)
    assert bad.returncode == 1
    assert "no saga 'book_hotels' in the definition" in bad.stdout


def test_flows_diagram_draws_the_hybrid() -> None:
    """`flows diagram` prints the hybrid's one flowchart."""
    done = run_cli("flows", "diagram", "trip", "--flows", TRIP, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("flowchart LR\n")
    assert "st1 -. invokes .-> sg0" in done.stdout
