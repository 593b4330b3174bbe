"""``tripwright flows simulate``: run a statechart in memory on virtual time.

The command is registered on the ``flows`` group by :mod:`tripwright.cli`. A definition
is a ``module:attribute`` naming one :class:`Statechart`, or a ``.yaml``/``.yml``/
``.scxml`` file. Events come from a YAML or JSON list of ``{at: 30s, event: name,
data: {...}}`` (``at`` defaults to 0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from tripwright.errors import ConfigurationError, StatechartLoopError, TripwrightError
from tripwright.flows.statechart.memory import SimulationResult, simulate
from tripwright.flows.statechart.model import Statechart, parse_delay

__all__ = ["load_events", "load_statechart", "simulate_command", "summary"]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def load_statechart(reference: str) -> Statechart:
    """The one statechart a reference (file or ``module:attribute``) names."""
    from tripwright.loading import load_reference

    items = [i for i in load_reference(reference) if isinstance(i, Statechart)]
    if len(items) != 1:
        raise ConfigurationError(
            f"{reference!r} names {len(items)} statecharts; simulate runs exactly one"
        )
    return items[0]


def load_events(path: Path) -> list[tuple[float, str, Any]]:
    """Timed external events from a YAML or JSON list of ``{at, event, data}``."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read events file {str(path)!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"events file {str(path)!r} is not YAML or JSON: {exc}") from None
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigurationError(f"events file {str(path)!r} must hold a list of events")
    events: list[tuple[float, str, Any]] = []
    for number, item in enumerate(raw, start=1):
        where = f"events file {str(path)!r}, event {number}"
        if not isinstance(item, dict) or not isinstance(item.get("event"), str):
            raise ConfigurationError(f"{where}: each event is a mapping with an 'event' name")
        unknown = set(item) - {"at", "event", "data"}
        if unknown:
            raise ConfigurationError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        try:
            at = parse_delay(item.get("at", 0))
        except TripwrightError as exc:
            raise ConfigurationError(f"{where}: {exc.message}") from None
        events.append((at, item["event"], item.get("data")))
    return events


def summary(result: SimulationResult) -> dict[str, Any]:
    """What ``--json`` prints: the configuration, whether it terminated and the log."""
    return {
        "configuration": list(result.configuration),
        "terminated": result.terminated,
        "log": [{"label": entry.label, "value": entry.value} for entry in result.log],
    }


def simulate_command(
    path: Annotated[
        str, typer.Argument(help="The statechart: module:attribute or a .yaml/.scxml file.")
    ],
    events: Annotated[
        Path | None,
        typer.Option("--events", help="YAML or JSON list of {at: 30s, event: name, data: {}}."),
    ] = None,
    max_time: Annotated[
        str | None, typer.Option("--max-time", help="Stop at this virtual time (30s, 15m, 2h).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    max_microsteps: Annotated[
        int | None,
        typer.Option(
            "--max-microsteps",
            min=1,
            help="Steps one macrostep may take (default: the chart's, else 1000).",
        ),
    ] = None,
) -> None:
    """Run a statechart in memory on virtual time, feeding the timed events, until it
    terminates, goes idle with nothing pending, or reaches --max-time. A macrostep that
    does not end within the microstep limit stops the simulation with exit code 1."""
    try:
        chart = load_statechart(path)
        timeline = load_events(events) if events is not None else []
        limit = parse_delay(max_time) if max_time is not None else None
    except TripwrightError as exc:
        raise _fail(str(exc)) from None
    try:
        result = simulate(chart, timeline, max_time=limit, max_microsteps=max_microsteps)
    except StatechartLoopError as exc:
        raise _fail(str(exc), 1) from None
    if as_json:
        typer.echo(json.dumps(summary(result), default=repr))
        return
    typer.echo(f"configuration: {' '.join(result.configuration) or '(none)'}")
    typer.echo(f"terminated: {'yes' if result.terminated else 'no'}")
    typer.echo(f"time: {result.time:g}s")
    typer.echo("log:" if result.log else "log: (empty)")
    for entry in result.log:
        label = f"{entry.label}: " if entry.label else ""
        typer.echo(f"  {label}{json.dumps(entry.value, default=repr)}")
