"""The ``tripwright`` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tripwright.cli_dlq import dlq_app
from tripwright.cli_flows import simulate_command
from tripwright.engine import Engine, EngineConfig, FlowRegistry, RunRecord, RunStatus, Worker
from tripwright.engine.store import create_store, upgrade
from tripwright.errors import TripwrightError
from tripwright.flows.events import Choreography, Finding
from tripwright.flows.hybrid import Hybrid
from tripwright.flows.saga import Problem, Saga
from tripwright.flows.statechart.model import Statechart

if TYPE_CHECKING:
    from tripwright.loading import Definition

T = TypeVar("T")

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
app.add_typer(dlq_app, name="dlq")

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
    broker: Annotated[
        str,
        typer.Option(
            "--broker",
            envvar="TRIPWRIGHT_BROKER",
            help="Event transport: store:// (default: through the store), memory://, "
            "amqp://… or nats://…",
        ),
    ] = "store://",
) -> None:
    """Run a worker: claim due runs of the given flows and execute them until stopped.

    Consumer groups among the definitions are served too, with the outbox relay."""
    from tripwright.bus import broker_scheme, create_transport
    from tripwright.flows.events import EventBus
    from tripwright.loading import choreography_of, load_definitions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        broker_scheme(broker)
        registry, definitions = load_definitions(flows)
        choreography = choreography_of(definitions)
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
            if choreography is None:
                await node.run(stop)
            else:
                bus = EventBus(
                    store, choreography, transport=create_transport(broker), owner=node.id
                )
                bus.attach(node)
                await bus.connect()  # an unreachable broker stops the worker before it starts

                async def relay() -> None:
                    try:
                        await bus.run(stop)
                    finally:
                        stop.set()  # a bus that cannot run stops the worker too

                # Both finish (the worker drains its in-flight steps) before the store closes.
                results = await asyncio.gather(node.run(stop), relay(), return_exceptions=True)
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
        finally:
            await store.close()

    try:
        asyncio.run(serve())
    except TripwrightError as exc:
        raise _fail(str(exc)) from None


FlowsOption = Annotated[
    list[str],
    typer.Option(
        "--flows",
        envvar="TRIPWRIGHT_FLOWS",
        help="Definitions: module:attribute, or a statechart .yaml/.yml/.scxml file.",
    ),
]
flows_app = typer.Typer(help="Flow definitions: list, validate, draw.", no_args_is_help=True)
app.add_typer(flows_app, name="flows")
flows_app.command("simulate")(simulate_command)


def _run_json(run: RunRecord) -> dict[str, object]:
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
        "owner": run.owner,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "next_due_at": run.due_at,
    }


def _with_engine(
    db: str, action: Callable[[Engine], Awaitable[T]], flows: list[str] | None = None
) -> T:
    registry = FlowRegistry()
    if flows:
        from tripwright.loading import load_flows

        try:
            registry = load_flows(flows)
        except TripwrightError as exc:
            raise _fail(str(exc), 2) from None

    async def body() -> T:
        store = create_store(db)
        await store.open()
        try:
            return await action(Engine(store, registry))
        finally:
            await store.close()

    try:
        return asyncio.run(body())
    except TripwrightError as exc:
        raise _fail(str(exc)) from None


OptionalFlowsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--flows",
        envvar="TRIPWRIGHT_FLOWS",
        help="Definitions (module:attribute): with them, a run's position is described in "
        "its model's terms (a saga's element and phase).",
    ),
]


@runs_app.command("show")
def runs_show(
    run_id: str,
    db: DbOption = DEFAULT_DB,
    flows: OptionalFlowsOption = None,
    journal: Annotated[bool, typer.Option(help="Include the journal.")] = True,
) -> None:
    """Print a run as JSON: status, step, position, context, next timer, and its journal."""

    async def show(engine: Engine) -> dict[str, object]:
        shown = (await engine.describe(run_id)).to_json()
        if journal:
            shown["journal"] = [
                {"seq": e.seq, "kind": e.kind, "step": e.step, "at": e.at, "data": e.data}
                for e in await engine.journal(run_id)
            ]
        return shown

    console.print_json(json.dumps(_with_engine(db, show, flows)))


@runs_app.command("list")
def runs_list(
    db: DbOption = DEFAULT_DB,
    flow: Annotated[str | None, typer.Option(help="Only runs of this flow.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs in this status.")] = None,
    correlation: Annotated[str | None, typer.Option(help="Only this correlation id.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List runs, newest first."""
    if status is not None and status not in {s.value for s in RunStatus}:
        raise _fail(f"unknown status {status!r}: one of {', '.join(s.value for s in RunStatus)}", 2)
    runs = _with_engine(
        db,
        lambda engine: engine.list_runs(
            flow=flow, status=status, correlation_id=correlation, limit=limit
        ),
    )
    if as_json:
        for run in runs:
            print(json.dumps(_run_json(run)))
        return
    table = Table()
    for column in ("id", "flow", "status", "step", "correlation", "updated"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            run.id,
            f"{run.flow_name}@{run.flow_version}",
            run.status.value,
            run.step or "-",
            run.correlation_id,
            f"{run.updated_at:.3f}",
        )
    console.print(table)


def _control(
    verb: str, run_id: str, db: str, call: Callable[[Engine], Awaitable[RunRecord]]
) -> None:
    run = _with_engine(db, call)
    console.print(f"run {run.id} {verb}: now {run.status.value}")


@runs_app.command("pause")
def runs_pause(run_id: str, db: DbOption = DEFAULT_DB) -> None:
    """Pause a run: no worker takes it until it is resumed."""
    _control("paused", run_id, db, lambda engine: engine.pause(run_id))


@runs_app.command("resume")
def runs_resume(run_id: str, db: DbOption = DEFAULT_DB) -> None:
    """Resume a paused run."""
    _control("resumed", run_id, db, lambda engine: engine.resume(run_id))


@runs_app.command("cancel")
def runs_cancel(
    run_id: str,
    db: DbOption = DEFAULT_DB,
    reason: Annotated[str, typer.Option(help="Why, for the journal.")] = "cancelled by operator",
    flows: Annotated[
        list[str] | None,
        typer.Option(
            "--flows",
            envvar="TRIPWRIGHT_FLOWS",
            help="Definitions (module:attribute): with them, a flow's clean-up runs first "
            "(a saga compensates).",
        ),
    ] = None,
) -> None:
    """Cancel a run: at once, or through its flow's clean-up when --flows names it."""
    run = _with_engine(db, lambda engine: engine.cancel(run_id, reason), flows)
    verb = "cancelling (clean-up running)" if run.status is not RunStatus.CANCELLED else "cancelled"
    console.print(f"run {run.id} {verb}: now {run.status.value}")


@runs_app.command("retry")
def runs_retry(run_id: str, db: DbOption = DEFAULT_DB) -> None:
    """Run a failed run's failed step again, or retry a run parked for an operator."""
    run = _with_engine(db, lambda engine: engine.retry(run_id))
    if run.status is RunStatus.NEEDS_ATTENTION:
        _sent("retry", run)
    else:
        console.print(f"run {run.id} retried: now {run.status.value}")


@runs_app.command("resolve")
def runs_resolve(run_id: str, db: DbOption = DEFAULT_DB) -> None:
    """Tell a run parked for an operator that what it is stuck on was handled by hand."""
    _sent("resolve", _with_engine(db, lambda engine: engine.resolve(run_id)))


def _sent(action: str, run: RunRecord) -> None:
    event = ((run.state.get("wait") or {}).get("operator") or {}).get(action)
    console.print(f"run {run.id} needs_attention: {action} sent ({event}); a worker goes on")


def _definitions(flows: list[str]) -> dict[str, Definition]:
    from tripwright.loading import load_definitions

    try:
        return load_definitions(flows)[1]
    except TripwrightError as exc:
        raise _fail(str(exc), 2) from None


@flows_app.command("list")
def flows_list(flows: FlowsOption) -> None:
    """List the definitions with their model, version and steps."""
    table = Table()
    for column in ("name", "model", "version", "steps"):
        table.add_column(column)
    for name, definition in sorted(_definitions(flows).items()):
        if isinstance(definition, Saga):
            steps = ", ".join(e.name for e in definition.elements)
            table.add_row(name, "sequence", definition.version, steps)
        elif isinstance(definition, Statechart):
            states = ", ".join(definition.state_ids)
            table.add_row(name, "statechart", str(definition.version), states)
        elif isinstance(definition, Choreography):
            handlers = ", ".join(
                f"{g.name}.{h.name}" for g in definition.groups for h in g.handlers
            )
            table.add_row(name, "events", definition.version, handlers)
        elif isinstance(definition, Hybrid):
            parts = [
                *definition.chart.state_ids,
                *(f"saga {s.name}" for s in definition.sagas),
                *(f"group {g.name}" for g in definition.groups),
            ]
            table.add_row(name, "hybrid", definition.version, ", ".join(parts))
        else:
            table.add_row(
                name, "engine", definition.version, ", ".join(s.name for s in definition.steps)
            )
    console.print(table)


@flows_app.command("validate")
def flows_validate(
    flows: FlowsOption,
    name: Annotated[str | None, typer.Argument(help="One definition (default: all).")] = None,
) -> None:
    """Check definitions; exit 1 if any has an error (warnings are printed)."""
    definitions = _definitions(flows)
    if name is not None and name not in definitions:
        raise _fail(f"unknown flow {name!r} (have: {', '.join(sorted(definitions))})", 2)
    errors = 0
    for key, definition in sorted(definitions.items()):
        if name is not None and key != name:
            continue
        problems: list[Problem | Finding] = []
        if isinstance(definition, Saga | Choreography | Hybrid):
            problems.extend(definition.validate())
        elif isinstance(definition, Statechart):
            from tripwright.flows.statechart.validate import validate

            problems.extend(validate(definition))
        else:
            try:
                definition.validate()
            except TripwrightError as exc:
                problems.append(Problem("error", key, exc.message))
        for problem in problems:
            errors += problem.severity == "error"
            console.print(f"{key}: {problem}")
        if not problems:
            console.print(f"{key}: ok")
    if errors:
        raise typer.Exit(1)


@flows_app.command("diagram")
def flows_diagram(
    name: Annotated[str, typer.Argument(help="The definition to draw.")],
    flows: FlowsOption,
) -> None:
    """Print a definition as a Mermaid diagram."""
    from tripwright.flows.diagrams import flow_mermaid

    definitions = _definitions(flows)
    if name not in definitions:
        raise _fail(f"unknown flow {name!r} (have: {', '.join(sorted(definitions))})", 2)
    definition = definitions[name]
    if isinstance(definition, Statechart):
        from tripwright.flows.statechart.mermaid import to_mermaid

        print(to_mermaid(definition), end="")
        return
    print(
        definition.to_mermaid()
        if isinstance(definition, Saga | Choreography | Hybrid)
        else flow_mermaid(definition),
        end="",
    )


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
