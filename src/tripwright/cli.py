"""The ``tripwright`` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tripwright.engine import EngineConfig, Worker
from tripwright.engine.store import create_store, upgrade
from tripwright.errors import TripwrightError

__all__ = ["app", "main"]

DEFAULT_DB = "sqlite:///tripwright.db"

app = typer.Typer(
    name="tripwright",
    help="Durable orchestration of travel bookings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
runs_app = typer.Typer(help="Inspect runs.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(runs_app, name="runs")

console = Console()
err = Console(stderr=True)

DbOption = Annotated[
    str,
    typer.Option("--db", envvar="TRIPWRIGHT_DB", help="Store URL: sqlite:///FILE or postgresql://"),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(db: DbOption = DEFAULT_DB) -> None:
    """Apply the schema migrations to the database."""
    try:
        upgrade(db)
    except TripwrightError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # alembic/driver errors: report them plainly
        raise _fail(f"migration failed on {db}: {exc}") from None
    console.print(f"schema of {db} is up to date")


@app.command()
def worker(
    flows: Annotated[
        list[str], typer.Option("--flows", help="Flows to serve, as module:attribute (repeat).")
    ],
    db: DbOption = DEFAULT_DB,
    worker_id: Annotated[
        str | None, typer.Option("--id", help="Worker id (default: host:pid)")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Runs in flight at once.")] = 64,
    lease_ttl: Annotated[float, typer.Option(help="Lease time-to-live, seconds.")] = 30.0,
    heartbeat: Annotated[float | None, typer.Option(help="Heartbeat interval, seconds.")] = None,
) -> None:
    """Run a worker: claim due runs of the given flows and execute them until stopped."""
    from tripwright.loading import load_flows

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        registry = load_flows(flows)
        config = EngineConfig(
            lease_ttl=lease_ttl,
            heartbeat_interval=heartbeat or lease_ttl / 3,
            max_concurrency=concurrency,
            claim_batch=concurrency,
        )
    except TripwrightError as exc:
        raise _fail(str(exc), 2) from None

    async def serve() -> None:
        store = create_store(db)
        await store.open()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        node = Worker(store, registry, config=config, worker_id=worker_id)
        logging.getLogger("tripwright").info("worker %s serving %s", node.id, registry.keys())
        try:
            await node.run(stop)
        finally:
            await store.close()

    try:
        asyncio.run(serve())
    except TripwrightError as exc:
        raise _fail(str(exc)) from None


@runs_app.command("show")
def runs_show(run_id: str, db: DbOption = DEFAULT_DB) -> None:
    """Print a run and its journal as JSON."""

    async def show() -> dict[str, object]:
        store = create_store(db)
        await store.open()
        try:
            run = await store.get_run(run_id)
            journal = await store.journal(run_id)
        finally:
            await store.close()
        return {
            "id": run.id,
            "flow": run.flow_name,
            "version": run.flow_version,
            "status": run.status.value,
            "step": run.step,
            "context": run.context,
            "result": run.result,
            "error": run.error,
            "correlation_id": run.correlation_id,
            "journal": [
                {"seq": e.seq, "kind": e.kind, "step": e.step, "at": e.at, "data": e.data}
                for e in journal
            ],
        }

    try:
        console.print_json(json.dumps(asyncio.run(show())))
    except TripwrightError as exc:
        raise _fail(str(exc)) from None


@app.command()
def demo(
    db: Annotated[
        str | None, typer.Option("--db", help="Store URL (default: a fresh SQLite file)")
    ] = None,
    runs: Annotated[int, typer.Option(help="How many runs to start.")] = 300,
    kill_at: Annotated[
        float, typer.Option(help="Kill worker A after this share completes.")
    ] = 0.35,
    lease_ttl: Annotated[float, typer.Option(help="Lease TTL of the workers, seconds.")] = 2.0,
    work_dir: Annotated[Path | None, typer.Option(help="Where to keep files.")] = None,
) -> None:
    """Durable runs of a sample flow; one worker is SIGKILLed, another finishes the job."""
    from tripwright.demo.job import run_demo

    if runs < 1 or not 0 < kill_at < 1:
        raise _fail("--runs must be >= 1 and --kill-at between 0 and 1", 2)
    directory = work_dir or Path(tempfile.mkdtemp(prefix="tripwright-demo-"))
    url = db or f"sqlite:///{directory / 'tripwright.db'}"
    console.print(f"[bold]Tripwright demo[/]: {runs} runs of a 5-step flow on {url}")
    with Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("starting", total=runs)

        def on_progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done)

        try:
            report = asyncio.run(
                run_demo(
                    url,
                    directory,
                    runs=runs,
                    kill_fraction=kill_at,
                    lease_ttl=lease_ttl,
                    on_progress=on_progress,
                )
            )
        except TripwrightError as exc:
            raise _fail(str(exc)) from None
    table = Table(title="What the demo proves", show_lines=False)
    table.add_column("check")
    table.add_column("observed", justify="right")
    table.add_row("runs completed", f"{report.completed} / {report.runs}")
    table.add_row("runs in flight when worker A was SIGKILLed", str(report.killed_worker_runs))
    table.add_row("  ... finished by worker B", str(report.taken_over))
    table.add_row(
        "  ... first taken over after",
        "-"
        if report.takeover_seconds is None
        else f"{report.takeover_seconds:.2f}s (lease TTL {report.lease_ttl:g}s)",
    )
    table.add_row("provider effects applied / steps", f"{report.effects_applied} / {report.steps}")
    table.add_row(
        "repeated provider calls absorbed by idempotency keys", str(report.repeated_calls)
    )
    table.add_row("duplicate effects", str(report.duplicate_effects))
    table.add_row("runs with a gap in their journal", str(report.journal_gaps))
    table.add_row("wall time", f"{report.seconds:.1f}s")
    console.print(table)
    if report.ok:
        console.print(
            "[bold green]OK[/]: a killed worker lost nothing; every step took effect once."
        )
    else:
        raise _fail("the demo found a violated guarantee (see the table)")


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
