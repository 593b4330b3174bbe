"""SQLite store: the embedded default.

One connection on one dedicated thread serialises every statement, which is what SQLite
does internally anyway; WAL mode lets readers in other processes proceed. One worker
process per database file (with many runs in flight inside it).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tripwright.engine import codec
from tripwright.engine.children import cancel_change, checkpoint_notice
from tripwright.engine.records import (
    ACTIVE_STATUSES,
    WAITING_STATUSES,
    Checkpoint,
    ControlChange,
    EventRecord,
    JournalEntry,
    JournalKind,
    NewRun,
    RunMessage,
    RunRecord,
    RunStatus,
)
from tripwright.engine.store.base import (
    EVENT_COLUMNS,
    JOURNAL_COLUMNS,
    RUN_COLUMNS,
    Store,
    decode_event,
    decode_journal,
    decode_run,
    wait_match,
)
from tripwright.engine.store.migrate import SCHEMA_REVISION
from tripwright.engine.store.sqlite_bus import SQLiteBusMixin, insert_dead_letters
from tripwright.errors import (
    InvalidRunStateError,
    RunNotFoundError,
    SchemaError,
    StoreClosedError,
    StoreError,
)

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_ACTIVE = "('pending','running','waiting','needs_attention')"
#: Statuses in which a run accepts events (a paused run queues them for later).
_RECEIVING = frozenset({*ACTIVE_STATUSES, RunStatus.PAUSED})
_FAR = 1e300

_UPDATE_RUN = """
UPDATE runs SET status=?, step=?, state=?, context=?, result=?, error=?, updated_at=?,
  due_at=?, wait_names=?, wait_deadline=?, journal_seq=?,
  lease_owner=CASE WHEN ? THEN NULL ELSE lease_owner END,
  lease_expires_at=CASE WHEN ? THEN NULL ELSE ? END
WHERE id=? AND lease_owner=? AND lease_epoch=?
"""
_INSERT_JOURNAL = (
    "INSERT INTO journal (run_id, seq, kind, step, at, data, correlation_id) VALUES (?,?,?,?,?,?,?)"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox (event_id, run_id, topic, type, subject, data, headers, created_at) "
    "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(event_id) DO NOTHING"
)
_INSERT_TIMER = (
    "INSERT INTO run_events (run_id, name, payload, kind, timer_name, status, visible_at, "
    "created_at) VALUES (?,?,?,'timer',?,'pending',?,?)"
)
_CANCEL_TIMER = (
    "UPDATE run_events SET status='cancelled' "
    "WHERE run_id=? AND timer_name=? AND kind='timer' AND status='pending'"
)
_CONSUME = "UPDATE run_events SET status='consumed' WHERE id=? AND run_id=? AND status='pending'"
_RECOMPUTE_DUE = f"""
UPDATE runs SET due_at = NULLIF(MIN(COALESCE(wait_deadline, {_FAR}), COALESCE((
    SELECT MIN(e.visible_at) FROM run_events e
    WHERE e.run_id = runs.id AND e.status = 'pending'
      AND (runs.wait_names IS NULL OR instr(runs.wait_names, '|' || e.name || '|') > 0)
  ), {_FAR})), {_FAR})
WHERE id = ? AND status IN ('waiting','needs_attention')
"""


class SQLiteStore(SQLiteBusMixin, Store):
    """Store on a SQLite file in WAL mode."""

    dialect = "sqlite"
    max_inflight_commits = 1

    def __init__(self, path: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 10_000):
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------
    async def open(self) -> None:
        if self._executor is not None:
            return
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tripwright-sqlite")
        try:
            await self._call(self._connect)
        except BaseException:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=False)
            raise

    def _connect(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is None or row[0] != SCHEMA_REVISION:
            conn.close()
            found = row[0] if row else "none"
            raise SchemaError(
                f"database {self.path!r} has schema revision {found}, needs {SCHEMA_REVISION}: "
                "run `tripwright db upgrade`"
            )
        self._conn = conn

    async def close(self) -> None:
        if self._executor is None:
            self._closed = True
            return
        executor, self._executor = self._executor, None
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)
        self._closed = True

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreClosedError(f"SQLite store {self.path!r} is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite error on {self.path!r}: {exc}") from exc

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosedError(f"SQLite store {self.path!r} is closed")
        return self._conn

    def _tx(self, body: Callable[[sqlite3.Connection], T], *, immediate: bool = True) -> T:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            result = body(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    # -- runs -------------------------------------------------------------------------
    async def create_runs(self, runs: Sequence[NewRun]) -> list[tuple[RunRecord, bool]]:
        return await self._call(self._tx, lambda c: [_create_run(c, r) for r in runs])

    async def get_run(self, run_id: str) -> RunRecord:
        return await self._call(self._get_run, run_id)

    def _get_run(self, run_id: str) -> RunRecord:
        row = self._db.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFoundError(f"no run {run_id!r}", run_id=run_id)
        return decode_run(row)

    async def list_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        correlation_id: str | None = None,
        owner: str | None = None,
        limit: int = 100,
        before: float | None = None,
    ) -> list[RunRecord]:
        clauses, params = _filters(flow, status, correlation_id, owner, before)
        sql = f"SELECT {RUN_COLUMNS} FROM runs{clauses} ORDER BY created_at DESC, id LIMIT ?"

        def run() -> list[RunRecord]:
            return [decode_run(r) for r in self._db.execute(sql, (*params, limit))]

        return await self._call(run)

    async def count_runs(self, *, flow: str | None = None) -> dict[str, int]:
        sql = "SELECT status, COUNT(*) FROM runs" + (" WHERE flow_name=?" if flow else "")
        sql += " GROUP BY status"

        def run() -> dict[str, int]:
            return {r[0]: r[1] for r in self._db.execute(sql, (flow,) if flow else ())}

        return await self._call(run)

    async def control_run(
        self, run_id: str, now: float, decide: Callable[[RunRecord], ControlChange]
    ) -> RunRecord:
        def body(conn: sqlite3.Connection) -> RunRecord:
            run = self._get_run(run_id)
            _write_control(conn, run, decide(run), now)
            return self._get_run(run_id)

        return await self._call(self._tx, body)

    # -- leases -----------------------------------------------------------------------
    async def claim_runs(
        self, worker_id: str, flow_keys: Sequence[str], now: float, limit: int, lease_ttl: float
    ) -> list[RunRecord]:
        if limit <= 0 or not flow_keys:
            return []
        marks = ",".join("?" * len(flow_keys))
        sql = f"""
        UPDATE runs SET lease_owner=?, lease_expires_at=?, lease_epoch=lease_epoch+1,
          event_hint=NULL
        WHERE id IN (
          SELECT id FROM runs
          WHERE due_at <= ? AND status IN {_ACTIVE} AND flow_key IN ({marks})
            AND (lease_owner IS NULL OR lease_expires_at <= ?)
          ORDER BY due_at LIMIT ?)
        RETURNING {RUN_COLUMNS}
        """
        params = (worker_id, now + lease_ttl, now, *flow_keys, now, limit)

        def body(conn: sqlite3.Connection) -> list[RunRecord]:
            return [decode_run(r) for r in conn.execute(sql, params).fetchall()]

        return await self._call(self._tx, body)

    async def heartbeat(
        self, worker_id: str, run_ids: Sequence[str], now: float, lease_ttl: float
    ) -> set[str]:
        if not run_ids:
            return set()
        ids = list(run_ids)

        def body(conn: sqlite3.Connection) -> set[str]:
            held: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"UPDATE runs SET lease_expires_at=? WHERE lease_owner=? AND id IN ({marks}) "
                    "RETURNING id",
                    (now + lease_ttl, worker_id, *chunk),
                ).fetchall()
                held.update(r[0] for r in rows)
            return held

        return await self._call(self._tx, body)

    async def release_runs(self, worker_id: str, run_ids: Sequence[str]) -> None:
        ids = list(run_ids)

        def body(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE runs SET lease_owner=NULL, lease_expires_at=NULL "
                "WHERE id=? AND lease_owner=?",
                [(i, worker_id) for i in ids],
            )

        if ids:
            await self._call(self._tx, body)

    async def next_due_at(
        self, flow_keys: Sequence[str], *, include_leased: bool = False
    ) -> float | None:
        if not flow_keys:
            return None
        marks = ",".join("?" * len(flow_keys))
        if include_leased:
            leased_sql = (
                "SELECT MIN(CASE WHEN lease_expires_at > due_at THEN lease_expires_at "
                f"ELSE due_at END) FROM runs WHERE due_at IS NOT NULL AND status IN {_ACTIVE} "
                f"AND flow_key IN ({marks})"
            )

            def scan() -> float | None:
                value = self._db.execute(leased_sql, tuple(flow_keys)).fetchone()[0]
                return None if value is None else float(value)

            return await self._call(scan)
        # Leased runs are someone's: they are skipped (a dead worker's are found by the
        # next poll after their lease ends). Walks the due_at index.
        sql = (
            "SELECT due_at FROM runs WHERE due_at IS NOT NULL AND lease_owner IS NULL "
            f"AND status IN {_ACTIVE} AND flow_key IN ({marks}) ORDER BY due_at LIMIT 1"
        )

        def run() -> float | None:
            row = self._db.execute(sql, tuple(flow_keys)).fetchone()
            return None if row is None else float(row[0])

        return await self._call(run)

    # -- checkpoints ------------------------------------------------------------------
    async def commit(self, checkpoints: Sequence[Checkpoint]) -> list[bool]:
        if not checkpoints:
            return []
        return await self._call(self._tx, lambda c: _apply_batch(c, checkpoints))

    # -- run events -------------------------------------------------------------------
    async def send_event(
        self,
        run_id: str,
        name: str,
        payload: str,
        now: float,
        *,
        visible_at: float | None = None,
        dedupe_key: str | None = None,
    ) -> int:
        at = now if visible_at is None else visible_at

        def body(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT status, flow_name FROM runs WHERE id=?", (run_id,)
            ).fetchone()
            if row is None:
                raise RunNotFoundError(f"no run {run_id!r}", run_id=run_id)
            if RunStatus(row[0]) not in _RECEIVING:
                raise InvalidRunStateError(
                    f"cannot send {name!r} to a {row[0]} run", run_id=run_id, flow=row[1]
                )
            return _queue_event(conn, run_id, name, payload, now, at, dedupe_key)

        return await self._call(self._tx, body)

    async def next_event(
        self, run_id: str, names: Sequence[str] | None, now: float
    ) -> EventRecord | None:
        match = wait_match(names)
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM run_events WHERE run_id=? AND status='pending' "
            "AND visible_at<=? AND (? IS NULL OR instr(?, '|' || name || '|') > 0) "
            "ORDER BY visible_at, id LIMIT 1"
        )

        def run() -> EventRecord | None:
            row = self._db.execute(sql, (run_id, now, match, match)).fetchone()
            return None if row is None else decode_event(row)

        return await self._call(run)

    async def get_event(self, event_id: int) -> EventRecord | None:
        def run() -> EventRecord | None:
            row = self._db.execute(
                f"SELECT {EVENT_COLUMNS} FROM run_events WHERE id=? AND status='pending'",
                (event_id,),
            ).fetchone()
            return None if row is None else decode_event(row)

        return await self._call(run)

    async def pending_events(self, run_id: str) -> list[EventRecord]:
        def run() -> list[EventRecord]:
            rows = self._db.execute(
                f"SELECT {EVENT_COLUMNS} FROM run_events WHERE run_id=? AND status='pending' "
                "ORDER BY visible_at, id",
                (run_id,),
            )
            return [decode_event(r) for r in rows]

        return await self._call(run)

    # -- journal ----------------------------------------------------------------------
    async def journal(self, run_id: str, *, after_seq: int = 0) -> list[JournalEntry]:
        def run() -> list[JournalEntry]:
            rows = self._db.execute(
                f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE run_id=? AND seq>? ORDER BY seq",
                (run_id, after_seq),
            )
            return [decode_journal(r) for r in rows]

        return await self._call(run)

    async def journal_by_correlation(self, correlation_id: str) -> list[JournalEntry]:
        def run() -> list[JournalEntry]:
            rows = self._db.execute(
                f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE run_id IN "
                f"(SELECT id FROM runs WHERE correlation_id=?) ORDER BY at, run_id, seq",
                (correlation_id,),
            )
            return [decode_journal(r) for r in rows]

        return await self._call(run)

    async def outbox_count(self, *, published: bool | None = None) -> int:
        sql = "SELECT COUNT(*) FROM outbox"
        if published is not None:
            sql += " WHERE published_at IS " + ("NOT NULL" if published else "NULL")
        return await self._call(lambda: int(self._db.execute(sql).fetchone()[0]))


def _filters(
    flow: str | None,
    status: str | None,
    correlation_id: str | None,
    owner: str | None,
    before: float | None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("flow_name", flow),
        ("status", status),
        ("correlation_id", correlation_id),
        ("owner", owner),
    ):
        if value is not None:
            clauses.append(f"{column}=?")
            params.append(value)
    if before is not None:
        clauses.append("created_at<?")
        params.append(before)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _create_run(conn: sqlite3.Connection, run: NewRun) -> tuple[RunRecord, bool]:
    owner = run.owner or ""
    if run.idempotency_key is not None:
        row = conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE owner=? AND idempotency_key=?",
            (owner, run.idempotency_key),
        ).fetchone()
        if row is not None:
            return decode_run(row), False
    conn.execute(
        "INSERT INTO runs (id, flow_name, flow_version, flow_key, definition_hash, status, step, "
        "state, input, context, correlation_id, owner, idempotency_key, created_at, updated_at, "
        "due_at, lease_epoch, journal_seq) VALUES (?,?,?,?,?,'pending',?,?,?,?,?,?,?,?,?,?,0,1)",
        (
            run.id,
            run.flow_name,
            run.flow_version,
            f"{run.flow_name}@{run.flow_version}",
            run.definition_hash,
            run.step,
            codec.dumps(run.state, what="run state"),
            codec.dumps(run.input, what="run input"),
            codec.dumps(run.context, what="run context"),
            run.correlation_id,
            owner,
            run.idempotency_key,
            run.created_at,
            run.created_at,
            run.created_at,
        ),
    )
    conn.execute(
        _INSERT_JOURNAL,
        (
            run.id,
            1,
            JournalKind.RUN_CREATED.value,
            None,
            run.created_at,
            codec.dumps(
                {
                    "flow": run.flow_name,
                    "version": run.flow_version,
                    "definition_hash": run.definition_hash,
                }
            ),
            run.correlation_id,
        ),
    )
    row = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=?", (run.id,)).fetchone()
    return decode_run(row), True


def _apply_batch(conn: sqlite3.Connection, cps: Sequence[Checkpoint]) -> list[bool]:
    """Write a batch: guarded run updates first, then the winners' rows in bulk."""
    outcome = [_update_run(conn, cp) for cp in cps]
    kept = [cp for cp, ok in zip(cps, outcome, strict=True) if ok]
    conn.executemany(
        _INSERT_JOURNAL,
        [
            (e.run_id, e.seq, e.kind, e.step, e.at, codec.dumps(e.data), e.correlation_id)
            for cp in kept
            for e in cp.journal
        ],
    )
    outbox = [
        (m.event_id, cp.run_id, m.topic, m.type, m.subject, m.data, codec.dumps(m.headers), cp.now)
        for cp in kept
        for m in cp.outbox
    ]
    if outbox:
        conn.executemany(_INSERT_OUTBOX, outbox)
    cancels = [(cp.run_id, name) for cp in kept for name in cp.cancelled_timers]
    if cancels:
        conn.executemany(_CANCEL_TIMER, cancels)
    timers = [
        (cp.run_id, t.name, t.payload, t.timer_name, t.visible_at, cp.now)
        for cp in kept
        for t in cp.timers
    ]
    if timers:
        conn.executemany(_INSERT_TIMER, timers)
    consumed = [(event_id, cp.run_id) for cp in kept for event_id in cp.consumed_events]
    if consumed:
        conn.executemany(_CONSUME, consumed)
    for cp in kept:
        if cp.dead_letters:
            insert_dead_letters(conn, cp.dead_letters, cp.now)
    waiting = [(cp.run_id,) for cp in kept if cp.status in WAITING_STATUSES]
    if waiting:
        conn.executemany(_RECOMPUTE_DUE, waiting)
    for cp in kept:
        notice = checkpoint_notice(cp.run_id, cp.status, cp.state, cp.result, cp.error)
        if cp.links or notice is not None:
            _apply_links(conn, cp, [notice] if notice is not None else [])
    return outcome


def _apply_links(conn: sqlite3.Connection, cp: Checkpoint, notices: list[RunMessage]) -> None:
    """A checkpoint's writes to other runs: children, their cancels, messages."""
    for child in cp.children:
        if conn.execute("SELECT 1 FROM runs WHERE id=?", (child.id,)).fetchone() is None:
            _create_run(conn, child)
    for cancel in cp.cancels:
        row = conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE id=?", (cancel.run_id,)
        ).fetchone()
        if row is None:
            continue
        run = decode_run(row)
        try:
            change = cancel_change(run, cancel.reason, cancel.handler, cp.now)
        except InvalidRunStateError:
            continue  # ended or already cleaning up
        _write_control(conn, run, change, cp.now)
    for message in [*cp.messages, *notices]:
        _send_message(conn, message, cp.now)


def _send_message(conn: sqlite3.Connection, message: RunMessage, now: float) -> None:
    """Queue a message for its run, unless that run is gone or has ended."""
    row = conn.execute("SELECT status FROM runs WHERE id=?", (message.run_id,)).fetchone()
    if row is not None and RunStatus(row[0]) in _RECEIVING:
        _queue_event(
            conn, message.run_id, message.name, message.payload, now, now, message.dedupe_key
        )


def _queue_event(
    conn: sqlite3.Connection,
    run_id: str,
    name: str,
    payload: str,
    now: float,
    at: float,
    dedupe_key: str | None,
) -> int:
    """Insert a run event (once per dedupe key) and wake the run if it waits for it."""
    if dedupe_key is not None:
        found = conn.execute(
            "SELECT id FROM run_events WHERE run_id=? AND dedupe_key=?",
            (run_id, dedupe_key),
        ).fetchone()
        if found is not None:
            return int(found[0])
    cursor = conn.execute(
        "INSERT INTO run_events (run_id, name, payload, kind, status, visible_at, "
        "created_at, dedupe_key) VALUES (?,?,?,'event','pending',?,?,?)",
        (run_id, name, payload, at, now, dedupe_key),
    )
    conn.execute(
        "UPDATE runs SET due_at = CASE WHEN due_at IS NULL OR due_at > ? THEN ? "
        "ELSE due_at END WHERE id=? AND status IN ('waiting','needs_attention') "
        "AND (wait_names IS NULL OR instr(wait_names, ?) > 0)",
        (at, at, run_id, f"|{name}|"),
    )
    return int(cursor.lastrowid or 0)


def _write_control(
    conn: sqlite3.Connection, run: RunRecord, change: ControlChange, now: float
) -> None:
    """Write an operator's (or a parent's) change of ``run``, fencing out its worker."""
    seq = run.journal_seq + 1
    conn.execute(
        "UPDATE runs SET status=?, step=?, state=?, due_at=?, error=?, lease_owner=NULL, "
        "lease_expires_at=NULL, lease_epoch=lease_epoch+1, journal_seq=?, updated_at=? "
        "WHERE id=?",
        (
            change.status.value,
            change.step,
            codec.dumps(change.state),
            change.due_at,
            None if change.error is None else codec.dumps(change.error),
            seq,
            now,
            run.id,
        ),
    )
    if change.cancel_events:
        conn.execute(
            "UPDATE run_events SET status='cancelled' WHERE run_id=? AND status='pending'",
            (run.id,),
        )
    conn.execute(
        _INSERT_JOURNAL,
        (
            run.id,
            seq,
            change.journal_kind.value,
            change.step,
            now,
            codec.dumps(change.journal_data),
            run.correlation_id,
        ),
    )
    for message in change.messages:
        _send_message(conn, message, now)


def _update_run(conn: sqlite3.Connection, cp: Checkpoint) -> bool:
    """The fenced run update; False (and nothing written) if the lease was lost."""
    seq = cp.journal[-1].seq if cp.journal else None
    cursor = conn.execute(
        _UPDATE_RUN,
        (
            cp.status.value,
            cp.step,
            cp.state,
            cp.context,
            cp.result,
            cp.error,
            cp.now,
            cp.due_at,
            cp.wait_names,
            cp.wait_deadline,
            seq if seq is not None else _current_seq(conn, cp.run_id),
            cp.release,
            cp.release,
            cp.lease_expires_at,
            cp.run_id,
            cp.lease_owner,
            cp.lease_epoch,
        ),
    )
    return cursor.rowcount == 1


def _current_seq(conn: sqlite3.Connection, run_id: str) -> int:
    return int(conn.execute("SELECT journal_seq FROM runs WHERE id=?", (run_id,)).fetchone()[0])
