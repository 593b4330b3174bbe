"""`tripwright flows simulate | list | validate | diagram` with statecharts, end to end."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CHARTS = "tests.e2e.sample_charts:charts"
EVENTS = str(EXAMPLES / "booking_events.yaml")


def test_simulate_json_from_each_form() -> None:
    """The YAML, SCXML and Python forms of the booking chart simulate to the same result."""
    expected = {
        "configuration": ["confirmed"],
        "terminated": True,
        "log": [{"label": "ticketed", "value": {"ticket": "T1"}}],
    }
    for path in (
        str(EXAMPLES / "booking.yaml"),
        str(EXAMPLES / "booking.scxml"),
        "tests.e2e.sample_charts:booking",
    ):
        done = run_cli("flows", "simulate", path, "--events", EVENTS, "--json", cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert expected == json.loads(done.stdout)


def test_simulate_fires_timers_on_virtual_time(tmp_path: Path) -> None:
    """Without payment the 15-minute hold timer fires; --max-time stops before it."""
    path = str(EXAMPLES / "booking.yaml")
    timeline = tmp_path / "hold_only.json"
    timeline.write_text(json.dumps([{"at": "10s", "event": "hold"}]))
    finished = run_cli("flows", "simulate", path, "--events", str(timeline), cwd=ROOT)
    assert finished.returncode == 0, finished.stderr
    assert "configuration: expired\nterminated: yes\ntime: 910s\n" in finished.stdout
    limited = run_cli(
        "flows",
        "simulate",
        path,
        "--events",
        str(timeline),
        "--max-time",
        "5m",
        "--json",
        cwd=ROOT,
    )
    assert json.loads(limited.stdout) == {"configuration": ["held"], "terminated": False, "log": []}


def test_simulate_malformed_document_exits_2_with_line(tmp_path: Path) -> None:
    """A malformed document exits 2 and the message gives the line and the reason."""
    bad = tmp_path / "bad.scxml"
    bad.write_text(
        '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0">\n'
        '  <state id="a">\n'
        '    <transition event="go" cond="x &gt;" target="a"/>\n'
        "  </state>\n"
        "</scxml>\n"
    )
    done = run_cli("flows", "simulate", str(bad), cwd=ROOT)
    assert done.returncode == 2
    assert "line 3:" in done.stderr
    assert "invalid Python expression 'x >'" in done.stderr


def test_simulate_bad_events_file_exits_2(tmp_path: Path) -> None:
    """An events file that is not a list of {at, event, data} exits 2 with the reason."""
    events = tmp_path / "events.yaml"
    events.write_text("- {at: later, event: hold}\n")
    done = run_cli(
        "flows", "simulate", str(EXAMPLES / "booking.yaml"), "--events", str(events), cwd=ROOT
    )
    assert done.returncode == 2
    assert "event 1: not a delay: 'later'" in done.stderr


def test_list_validate_and_diagram_accept_files() -> None:
    """`flows list`, `validate` and `diagram` take statechart files through --flows."""
    listed = run_cli("flows", "list", "--flows", str(EXAMPLES / "booking.scxml"), cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    assert "statechart" in listed.stdout
    checked = run_cli("flows", "validate", "--flows", str(EXAMPLES / "booking.yaml"), cwd=ROOT)
    assert (checked.returncode, checked.stdout) == (0, "booking: ok\n")
    drawn = run_cli(
        "flows", "diagram", "booking", "--flows", str(EXAMPLES / "booking.scxml"), cwd=ROOT
    )
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout.startswith("stateDiagram-v2\n    [*] --> quoted\n")
    assert "    held --> expired : after 15m\n" in drawn.stdout


def test_validate_reports_statechart_errors_with_exit_1() -> None:
    """`flows validate` prints a Python chart's errors and exits 1."""
    done = run_cli("flows", "validate", "broken", "--flows", CHARTS, cwd=ROOT)
    assert done.returncode == 1
    assert "broken: error: start/transition 2: targets unknown state 'nowhere'" in done.stdout
    assert "broken: error: stuck: no way out" in done.stdout


def test_validate_malformed_file_exits_2_with_line(tmp_path: Path) -> None:
    """`flows validate` on a malformed YAML file exits 2 citing the line."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("statechart: t\nstates:\n  a:\n    on:\n      - {evnt: go}\n")
    done = run_cli("flows", "validate", "--flows", str(bad), cwd=ROOT)
    assert done.returncode == 2
    assert "line 5:" in done.stderr
    assert "unknown key 'evnt'" in done.stderr


LOOPING = """\
statechart: spinner
max_microsteps: 50
states:
  idle:
    on:
      - {event: go, target: a}
  a:
    on:
      - {target: b}
  b:
    on:
      - {target: a}
"""


def test_simulate_a_looping_chart_exits_1_naming_the_loop(tmp_path: Path) -> None:
    """A macrostep that never ends stops the simulation with exit code 1 and the reason;
    --max-microsteps replaces the chart's limit."""
    chart = tmp_path / "spinner.yaml"
    chart.write_text(LOOPING)
    timeline = tmp_path / "go.json"
    timeline.write_text(json.dumps([{"event": "go"}]))
    looped = run_cli(
        "flows", "simulate", str(chart), "--events", str(timeline), cwd=ROOT, timeout=60
    )
    assert looped.returncode == 1
    assert "statechart 'spinner'" in looped.stderr
    assert "within 50 microsteps" in looped.stderr
    assert "b -> a (eventless)" in looped.stderr
    again = run_cli(
        "flows",
        "simulate",
        str(chart),
        "--events",
        str(timeline),
        "--max-microsteps",
        "7",
        cwd=ROOT,
        timeout=60,
    )
    assert again.returncode == 1
    assert "within 7 microsteps" in again.stderr
