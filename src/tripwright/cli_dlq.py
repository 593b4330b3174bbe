"""``tripwright dlq``: list, redrive and drop dead letters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from tripwright.engine.records import DeadLetterRecord
from tripwright.engine.store import create_store
from tripwright.errors import DeadLetterNotFoundError, TripwrightError
from tripwright.flows.events import DeadLetters

__all__ = ["dlq_app"]

T = TypeVar("T")

dlq_app = typer.Typer(help="Dead letters: events consumer groups gave up on.", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)

DbOption = Annotated[
    str,
    typer.Option("--db", envvar="TRIPWRIGHT_DB", help="Store URL: sqlite:///FILE or postgresql://"),
]
DEFAULT_DB = "sqlite:///tripwright.db"


def _with_letters(db: str, action: Callable[[DeadLetters], Awaitable[T]]) -> T:
    async def body() -> T:
        store = create_store(db)
        await store.open()
        try:
            return await action(DeadLetters(store))
        finally:
            await store.close()

    try:
        return asyncio.run(body())
    except DeadLetterNotFoundError as exc:
        _err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except TripwrightError as exc:
        _err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None


def letter_json(letter: DeadLetterRecord) -> dict[str, Any]:
    """A dead letter as printed by ``--json``."""
    return {
        "id": letter.id,
        "group": letter.group,
        "handler": letter.handler,
        "event_id": letter.event_id,
        "topic": letter.topic,
        "type": letter.type,
        "subject": letter.subject,
        "kind": letter.kind,
        "reason": letter.reason,
        "error": letter.error,
        "attempts": letter.attempts,
        "run_id": letter.run_id,
        "first_seen_at": letter.first_seen_at,
        "failed_at": letter.failed_at,
        "envelope": letter.envelope,
        "raw": letter.raw,
    }


@dlq_app.command("list")
def dlq_list(
    db: DbOption = DEFAULT_DB,
    group: Annotated[str | None, typer.Option(help="Only this consumer group.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, oldest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List dead letters, oldest first."""
    letters = _with_letters(db, lambda dlq: dlq.list(group=group, limit=limit))
    if as_json:
        for letter in letters:
            print(json.dumps(letter_json(letter)))
        return
    table = Table()
    for column in ("id", "group", "handler", "type", "subject", "kind", "attempts", "reason"):
        table.add_column(column)
    for letter in letters:
        table.add_row(
            str(letter.id),
            letter.group,
            letter.handler or "-",
            letter.type or "-",
            letter.subject or "-",
            letter.kind,
            str(letter.attempts),
            letter.reason[:120],
        )
    _out.print(table)


@dlq_app.command("redrive")
def dlq_redrive(letter_id: int, db: DbOption = DEFAULT_DB) -> None:
    """Deliver a dead letter's event again (same id; it applies once) and remove it."""
    letter = _with_letters(db, lambda dlq: dlq.redrive(letter_id))
    _out.print(
        f"dead letter {letter.id} redriven: event {letter.event_id} queued for {letter.group}"
    )


@dlq_app.command("drop")
def dlq_drop(letter_id: int, db: DbOption = DEFAULT_DB) -> None:
    """Delete a dead letter for good."""
    letter = _with_letters(db, lambda dlq: dlq.drop(letter_id))
    _out.print(f"dead letter {letter.id} dropped (event {letter.event_id} of {letter.group})")
