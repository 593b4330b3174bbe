"""The SQLite store's event-bus half: mailbox delivery, the outbox relay, dead letters.

Every write runs in a ``BEGIN IMMEDIATE`` transaction on the store's one connection, so
relays (and everything else) are serialised: one relay at a time, by construction.
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tripwright.engine import codec
from tripwright.engine.records import (
    DeadLetter,
    DeadLetterRecord,
    EventRecord,
    InboxDelivery,
    JournalKind,
    OutboxMessage,
    OutboxRecord,
)
from tripwright.engine.store.base import (
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    OUTBOX_COLUMNS,
    Router,
    decode_dead_letter,
    decode_event,
    decode_outbox,
    mailbox_state,
    wait_match,
)
from tripwright.errors import DeadLetterNotFoundError, InvalidRunStateError

__all__ = ["SQLiteBusMixin", "insert_dead_letters"]

T = TypeVar("T")

_INSERT_OUTBOX = (
    "INSERT INTO outbox (event_id, run_id, topic, type, subject, data, headers, created_at) "
    "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(event_id) DO NOTHING"
)
_INSERT_MAILBOX = (
    "INSERT INTO runs (id, flow_name, flow_version, flow_key, definition_hash, status, step, "
    "state, input, context, correlation_id, owner, created_at, updated_at, due_at, "
    "lease_epoch, journal_seq) VALUES (?,?,?,?,?,'waiting',?,?,NULL,'{}',?,'',?,?,?,0,1) "
    "ON CONFLICT(id) DO NOTHING"
)
_INSERT_CREATED = (
    "INSERT INTO journal (run_id, seq, kind, step, at, data, correlation_id) "
    "VALUES (?,1,?,NULL,?,?,?)"
)
_INSERT_INBOX = (
    "INSERT INTO run_events (run_id, name, payload, kind, status, visible_at, created_at, "
    "dedupe_key) VALUES (?,?,?,'event','pending',?,?,?) ON CONFLICT(run_id, dedupe_key) DO NOTHING"
)
_WAKE = (
    "UPDATE runs SET due_at = CASE WHEN due_at IS NULL OR due_at > ? THEN ? ELSE due_at END "
    "WHERE id=? AND status IN ('waiting','needs_attention') AND wait_names IS NULL"
)
_INSERT_DEAD_LETTER = (
    "INSERT INTO dead_letters (group_name, event_id, topic, kind, reason, handler, type, "
    "subject, envelope, raw, error, attempts, run_id, first_seen_at, failed_at) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(group_name, event_id) DO NOTHING"
)


def insert_dead_letters(
    conn: sqlite3.Connection, letters: Sequence[DeadLetter], now: float
) -> None:
    """Write dead letters (the first one per group and event id wins)."""
    conn.executemany(
        _INSERT_DEAD_LETTER,
        [
            (
                d.group,
                d.event_id,
                d.topic,
                d.kind,
                d.reason,
                d.handler,
                d.type,
                d.subject,
                d.envelope,
                d.raw,
                d.error,
                d.attempts,
                d.run_id,
                d.first_seen_at,
                now,
            )
            for d in letters
        ],
    )


def _create_mailbox(conn: sqlite3.Connection, d: InboxDelivery, now: float) -> None:
    created = conn.execute(
        _INSERT_MAILBOX,
        (
            d.run_id,
            d.flow_name,
            d.flow_version,
            f"{d.flow_name}@{d.flow_version}",
            d.definition_hash,
            d.then,
            mailbox_state(d.then),
            d.correlation_id,
            now,
            now,
            now,
        ),
    )
    if created.rowcount == 1:
        conn.execute(
            _INSERT_CREATED,
            (
                d.run_id,
                JournalKind.RUN_CREATED.value,
                now,
                codec.dumps(
                    {
                        "flow": d.flow_name,
                        "version": d.flow_version,
                        "definition_hash": d.definition_hash,
                    }
                ),
                d.correlation_id,
            ),
        )


def _deliver(
    conn: sqlite3.Connection, deliveries: Sequence[InboxDelivery], now: float
) -> list[bool]:
    queued: list[bool] = []
    seen: set[str] = set()  # mailboxes that exist by now in this transaction
    woken: set[str] = set()
    for d in deliveries:
        if d.run_id not in seen:
            seen.add(d.run_id)
            _create_mailbox(conn, d, now)
        cursor = conn.execute(_INSERT_INBOX, (d.run_id, d.name, d.payload, now, now, d.dedupe_key))
        fresh = cursor.rowcount == 1
        queued.append(fresh)
        if fresh and d.run_id not in woken:
            woken.add(d.run_id)
            conn.execute(_WAKE, (now, now, d.run_id))
    return queued


class SQLiteBusMixin:
    """Event-bus methods of :class:`SQLiteStore` (see the Store port for the contract)."""

    @abstractmethod
    async def _call(self, fn: Callable[..., T], *args: Any) -> T: ...

    @abstractmethod
    def _tx(self, body: Callable[[sqlite3.Connection], T], *, immediate: bool = True) -> T: ...

    @property
    @abstractmethod
    def _db(self) -> sqlite3.Connection: ...

    async def append_outbox(self, messages: Sequence[OutboxMessage], now: float) -> None:
        rows = [
            (m.event_id, "", m.topic, m.type, m.subject, m.data, codec.dumps(m.headers), now)
            for m in messages
        ]

        def body(conn: sqlite3.Connection) -> None:
            conn.executemany(_INSERT_OUTBOX, rows)

        if rows:
            await self._call(self._tx, body)

    async def next_events(
        self,
        run_id: str,
        names: Sequence[str] | None,
        now: float,
        limit: int,
        *,
        timers: bool = False,
    ) -> list[EventRecord]:
        match = wait_match(names)
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM run_events WHERE run_id=? AND status='pending' "
            "AND (kind='event' OR ?) AND visible_at<=? "
            "AND (? IS NULL OR instr(?, '|' || name || '|') > 0) "
            "ORDER BY visible_at, id LIMIT ?"
        )

        def run() -> list[EventRecord]:
            rows = self._db.execute(sql, (run_id, timers, now, match, match, limit))
            return [decode_event(r) for r in rows]

        return await self._call(run)

    async def deliver(self, deliveries: Sequence[InboxDelivery], now: float) -> list[bool]:
        if not deliveries:
            return []
        return await self._call(self._tx, lambda c: _deliver(c, deliveries, now))

    async def relay_outbox(self, route: Router, limit: int, now: float) -> int:
        def body(conn: sqlite3.Connection) -> int:
            rows = [
                decode_outbox(r)
                for r in conn.execute(
                    f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE published_at IS NULL "
                    "ORDER BY id LIMIT ?",
                    (limit,),
                )
            ]
            if not rows:
                return 0
            _deliver(conn, [d for record in rows for d in route(record)], now)
            conn.executemany(
                "UPDATE outbox SET published_at=? WHERE id=?", [(now, r.id) for r in rows]
            )
            return len(rows)

        return await self._call(self._tx, body)

    async def claim_outbox(
        self, relay: str, owner: str, now: float, lease_ttl: float, limit: int
    ) -> tuple[int, list[OutboxRecord]] | None:
        def body(conn: sqlite3.Connection) -> tuple[int, list[OutboxRecord]] | None:
            row = conn.execute(
                "SELECT owner, epoch, expires_at FROM relay_leases WHERE name=?", (relay,)
            ).fetchone()
            if row is None:
                epoch = 1
                conn.execute(
                    "INSERT INTO relay_leases (name, owner, epoch, expires_at) VALUES (?,?,?,?)",
                    (relay, owner, epoch, now + lease_ttl),
                )
            elif row[0] == owner:
                epoch = int(row[1])
                conn.execute(
                    "UPDATE relay_leases SET expires_at=? WHERE name=?", (now + lease_ttl, relay)
                )
            elif row[0] is not None and row[2] is not None and row[2] > now:
                return None
            else:
                epoch = int(row[1]) + 1
                conn.execute(
                    "UPDATE relay_leases SET owner=?, epoch=?, expires_at=? WHERE name=?",
                    (owner, epoch, now + lease_ttl, relay),
                )
            rows = conn.execute(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE published_at IS NULL "
                "ORDER BY id LIMIT ?",
                (limit,),
            )
            return epoch, [decode_outbox(r) for r in rows]

        return await self._call(self._tx, body)

    async def mark_published(
        self, relay: str, owner: str, epoch: int, ids: Sequence[int], now: float
    ) -> bool:
        def body(conn: sqlite3.Connection) -> bool:
            held = conn.execute(
                "SELECT 1 FROM relay_leases WHERE name=? AND owner=? AND epoch=?",
                (relay, owner, epoch),
            ).fetchone()
            if held is None:
                return False
            conn.executemany(
                "UPDATE outbox SET published_at=? WHERE id=? AND published_at IS NULL",
                [(now, i) for i in ids],
            )
            return True

        return await self._call(self._tx, body)

    async def add_dead_letter(self, letter: DeadLetter, now: float) -> int:
        def body(conn: sqlite3.Connection) -> int:
            insert_dead_letters(conn, [letter], now)
            row = conn.execute(
                "SELECT id FROM dead_letters WHERE group_name=? AND event_id=?",
                (letter.group, letter.event_id),
            ).fetchone()
            return int(row[0])

        return await self._call(self._tx, body)

    async def list_dead_letters(
        self, *, group: str | None = None, limit: int = 100
    ) -> list[DeadLetterRecord]:
        where = " WHERE group_name=?" if group is not None else ""
        params: tuple[Any, ...] = (group, limit) if group is not None else (limit,)

        def run() -> list[DeadLetterRecord]:
            rows = self._db.execute(
                f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters{where} ORDER BY id LIMIT ?",
                params,
            )
            return [decode_dead_letter(r) for r in rows]

        return await self._call(run)

    def _letter(self, conn: sqlite3.Connection, letter_id: int) -> DeadLetterRecord:
        row = conn.execute(
            f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id=?", (letter_id,)
        ).fetchone()
        if row is None:
            raise DeadLetterNotFoundError(f"no dead letter {letter_id}")
        return decode_dead_letter(row)

    async def get_dead_letter(self, letter_id: int) -> DeadLetterRecord:
        return await self._call(self._letter, self._db, letter_id)

    async def redrive_dead_letter(
        self, letter_id: int, delivery: InboxDelivery | None, now: float
    ) -> DeadLetterRecord:
        def body(conn: sqlite3.Connection) -> DeadLetterRecord:
            letter = self._letter(conn, letter_id)
            requeued = 0
            if letter.run_id is not None:
                requeued = conn.execute(
                    "UPDATE run_events SET status='pending', visible_at=? "
                    "WHERE run_id=? AND dedupe_key=? AND status<>'pending'",
                    (now, letter.run_id, letter.event_id),
                ).rowcount
                if requeued:
                    conn.execute(_WAKE, (now, now, letter.run_id))
            if not requeued:
                if delivery is None:
                    raise InvalidRunStateError(
                        f"dead letter {letter_id} has no valid envelope to redrive; drop it"
                    )
                _deliver(conn, [delivery], now)
            conn.execute("DELETE FROM dead_letters WHERE id=?", (letter_id,))
            return letter

        return await self._call(self._tx, body)

    async def drop_dead_letter(self, letter_id: int) -> DeadLetterRecord:
        def body(conn: sqlite3.Connection) -> DeadLetterRecord:
            letter = self._letter(conn, letter_id)
            conn.execute("DELETE FROM dead_letters WHERE id=?", (letter_id,))
            return letter

        return await self._call(self._tx, body)

    async def prune_events(self, before: float, *, limit: int = 10_000) -> int:
        def body(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM run_events WHERE id IN (SELECT id FROM run_events "
                "WHERE status IN ('consumed','cancelled') AND created_at < ? LIMIT ?)",
                (before, limit),
            ).rowcount

        return await self._call(self._tx, body)
