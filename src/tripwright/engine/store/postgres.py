"""PostgreSQL store: many workers share one database.

Claims use ``FOR UPDATE SKIP LOCKED`` so no run is ever leased to two workers at once;
group commits write every checkpoint of a batch with a handful of set-based statements
(``unnest`` arrays), so a batch costs the same round trips whatever its size.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeAlias

import asyncpg

from tripwright.engine import codec
from tripwright.engine.children import cancel_change, checkpoint_notice
from tripwright.engine.records import (
    ACTIVE_STATUSES,
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
from tripwright.engine.store.postgres_bus import (
    DEAD_LETTERS_CTE,
    PostgresBusMixin,
    dead_letter_columns,
)
from tripwright.errors import (
    InvalidRunStateError,
    RunNotFoundError,
    SchemaError,
    StoreClosedError,
    StoreDataError,
    StoreError,
    TripwrightError,
)

__all__ = ["PostgresStore"]

_Conn: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

_ACTIVE = "('pending','running','waiting','needs_attention')"
#: Statuses in which a run accepts events (a paused run queues them for later).
_RECEIVING = frozenset({*ACTIVE_STATUSES, RunStatus.PAUSED})

# A group commit is ONE statement: data-modifying CTEs keyed by the position of each
# checkpoint in the batch. Only checkpoints whose fenced UPDATE matched (``u``) write their
# journal entries, outbox messages and timers, so a lost lease leaves no trace and needs no
# retry; and one statement is one round trip and one implicit transaction.
_CHECKPOINT_ROWS = """
v AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[],
      $7::text[], $8::text[], $9::text[], $10::float8[], $11::float8[], $12::text[],
      $13::float8[], $14::int[], $15::bool[], $16::float8[], $17::text[], $18::text[])
    WITH ORDINALITY AS v(id, owner, epoch, status, step, state, context, result, error, now,
      due_at, wait_names, wait_deadline, seq, release, lease_expires, consumed, cancelled, idx)
),
l AS MATERIALIZED (
  -- Lock the batch's rows in id order, as heartbeats do, so the two never deadlock.
  SELECT id FROM runs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
),
u AS (
  UPDATE runs AS r SET status = v.status, step = v.step, state = v.state::jsonb,
    context = v.context::jsonb, result = v.result::jsonb, error = v.error::jsonb,
    updated_at = v.now, wait_names = v.wait_names, wait_deadline = v.wait_deadline,
    journal_seq = COALESCE(v.seq, r.journal_seq),
    lease_owner = CASE WHEN v.release THEN NULL ELSE r.lease_owner END,
    lease_expires_at = CASE WHEN v.release THEN NULL ELSE v.lease_expires END,
    event_hint = CASE WHEN v.status IN ('waiting','needs_attention') THEN NULL
      ELSE r.event_hint END,
    due_at = CASE WHEN v.status NOT IN ('waiting','needs_attention') THEN v.due_at
      ELSE LEAST(v.due_at, r.event_hint, (
      SELECT min(e.visible_at) FROM run_events e
      WHERE e.run_id = v.id AND e.status = 'pending'
        AND (v.wait_names IS NULL OR position('|' || e.name || '|' in v.wait_names) > 0)
        AND (v.consumed IS NULL OR e.id <> ALL(v.consumed::int8[]))
        AND NOT (e.kind = 'timer' AND v.cancelled IS NOT NULL
                 AND position('|' || e.timer_name || '|' in v.cancelled) > 0))) END
  FROM v
  WHERE r.id = v.id AND r.lease_owner = v.owner AND r.lease_epoch = v.epoch
    AND r.id IN (SELECT id FROM l)
  RETURNING v.idx::int AS idx, v.id, v.now, v.consumed, v.cancelled
)"""
_JOURNAL_CTE = """
j AS (
  INSERT INTO journal (run_id, seq, kind, step, at, data, correlation_id)
  SELECT u.id, jv.seq, jv.kind, jv.step, jv.at, jv.data::jsonb, jv.corr
  FROM unnest(${0}::int[], ${1}::int[], ${2}::text[], ${3}::text[], ${4}::float8[],
              ${5}::text[], ${6}::text[]) AS jv(cp, seq, kind, step, at, data, corr)
  JOIN u ON u.idx = jv.cp
)"""
_OUTBOX_CTE = """
o AS (
  INSERT INTO outbox (event_id, run_id, topic, type, subject, data, headers, created_at)
  SELECT ov.event_id, u.id, ov.topic, ov.type, ov.subject, ov.data::jsonb, ov.headers::jsonb,
         u.now
  FROM unnest(${0}::int[], ${1}::text[], ${2}::text[], ${3}::text[], ${4}::text[],
              ${5}::text[], ${6}::text[]) AS ov(cp, event_id, topic, type, subject, data, headers)
  JOIN u ON u.idx = ov.cp
  ON CONFLICT (event_id) DO NOTHING
)"""
_TIMERS_CTE = """
t AS (
  INSERT INTO run_events (run_id, name, payload, kind, timer_name, status, visible_at, created_at)
  SELECT u.id, tv.name, tv.payload::jsonb, 'timer', tv.timer_name, 'pending', tv.visible_at,
         u.now
  FROM unnest(${0}::int[], ${1}::text[], ${2}::text[], ${3}::text[], ${4}::float8[])
    AS tv(cp, name, payload, timer_name, visible_at)
  JOIN u ON u.idx = tv.cp
)"""
_CANCEL_CTE = """
c AS (
  UPDATE run_events AS e SET status = 'cancelled' FROM u
  WHERE u.cancelled IS NOT NULL AND e.run_id = u.id AND e.kind = 'timer'
    AND e.status = 'pending' AND position('|' || e.timer_name || '|' in u.cancelled) > 0
    AND (u.consumed IS NULL OR e.id <> ALL(u.consumed::int8[]))
)"""
_CONSUME_CTE = """
k AS (
  UPDATE run_events AS e SET status = 'consumed' FROM u
  WHERE u.consumed IS NOT NULL AND e.id = ANY(u.consumed::int8[]) AND e.run_id = u.id
    AND e.status = 'pending'
)"""


#: How a send wakes its run: a waiting run becomes due; a leased one (whatever its status
#: says: a claimed waiting run still reads 'waiting') gets a hint that its next waiting
#: checkpoint reads from the row it locks, newer than the statement's snapshot.
#: Parameters: $1 the event's visible time, $2 the run id, $3 ``|name|``.
WAKE_ON_SEND = """
UPDATE runs SET
  due_at = CASE WHEN status IN ('waiting','needs_attention') AND (wait_names IS NULL
    OR position($3 in wait_names) > 0) THEN LEAST(due_at, $1) ELSE due_at END,
  event_hint = CASE WHEN lease_owner IS NOT NULL
    THEN LEAST(COALESCE(event_hint, $1), $1) ELSE event_hint END
WHERE id = $2
"""


class PostgresStore(PostgresBusMixin, Store):
    """Store on PostgreSQL, shared by any number of workers."""

    dialect = "postgresql"

    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 10) -> None:
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        # Two batches in flight: one commits while the next fills; more only shrinks batches.
        self.max_inflight_commits = 2
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                reset=_keep_session,
                # The checkpoint statement is the same shape every time: plan it once.
                server_settings={"plan_cache_mode": "force_generic_plan"},
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {_safe(self.dsn)}: {exc}") from exc
        try:
            row = await pool.fetchval("SELECT version_num FROM alembic_version")
        except asyncpg.UndefinedTableError:
            row = None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await pool.close()
            raise StoreError(f"cannot read the schema revision: {exc}") from exc
        if row != SCHEMA_REVISION:
            await pool.close()
            raise SchemaError(
                f"database {_safe(self.dsn)} has schema revision {row or 'none'}, needs "
                f"{SCHEMA_REVISION}: run `tripwright db upgrade --db URL`"
            )
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @contextlib.asynccontextmanager
    async def _conn(self, *, transaction: bool = False) -> AsyncIterator[_Conn]:
        if self._pool is None:
            raise StoreClosedError("PostgreSQL store is closed")
        try:
            async with self._pool.acquire() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except TripwrightError:
            raise
        except asyncpg.DataError as exc:
            raise StoreDataError(f"PostgreSQL rejected a value: {exc}") from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreError(f"PostgreSQL error: {exc}") from exc

    # -- runs -------------------------------------------------------------------------
    async def create_runs(self, runs: Sequence[NewRun]) -> list[tuple[RunRecord, bool]]:
        out: list[tuple[RunRecord, bool]] = []
        async with self._conn(transaction=True) as conn:
            for run in runs:
                out.append(await _create_run(conn, run))
        return out

    async def get_run(self, run_id: str) -> RunRecord:
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=$1", run_id)
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
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("flow_name", flow),
            ("status", status),
            ("correlation_id", correlation_id),
            ("owner", owner),
        ):
            if value is not None:
                params.append(value)
                clauses.append(f"{column}=${len(params)}")
        if before is not None:
            params.append(before)
            clauses.append(f"created_at<${len(params)}")
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        params.append(limit)
        sql = (
            f"SELECT {RUN_COLUMNS} FROM runs{where} ORDER BY created_at DESC, id "
            f"LIMIT ${len(params)}"
        )
        async with self._conn() as conn:
            return [decode_run(r) for r in await conn.fetch(sql, *params)]

    async def count_runs(self, *, flow: str | None = None) -> dict[str, int]:
        async with self._conn() as conn:
            if flow:
                rows = await conn.fetch(
                    "SELECT status, count(*) FROM runs WHERE flow_name=$1 GROUP BY status", flow
                )
            else:
                rows = await conn.fetch("SELECT status, count(*) FROM runs GROUP BY status")
        return {r[0]: int(r[1]) for r in rows}

    async def control_run(
        self, run_id: str, now: float, decide: Callable[[RunRecord], ControlChange]
    ) -> RunRecord:
        async with self._conn(transaction=True) as conn:
            row = await conn.fetchrow(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE id=$1 FOR UPDATE", run_id
            )
            if row is None:
                raise RunNotFoundError(f"no run {run_id!r}", run_id=run_id)
            run = decode_run(row)
            change = decide(run)
            await _write_control(conn, run, change, now)
            row = await conn.fetchrow(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=$1", run_id)
        assert row is not None
        return decode_run(row)

    # -- leases -----------------------------------------------------------------------
    async def claim_runs(
        self, worker_id: str, flow_keys: Sequence[str], now: float, limit: int, lease_ttl: float
    ) -> list[RunRecord]:
        if limit <= 0 or not flow_keys:
            return []
        sql = f"""
        UPDATE runs SET lease_owner=$1, lease_expires_at=$2, lease_epoch=lease_epoch+1,
          event_hint=NULL
        WHERE id IN (
          SELECT id FROM runs
          WHERE due_at <= $3 AND status IN {_ACTIVE} AND flow_key = ANY($4::text[])
            AND (lease_owner IS NULL OR lease_expires_at <= $3)
          ORDER BY due_at LIMIT $5
          FOR UPDATE SKIP LOCKED)
        RETURNING {RUN_COLUMNS}
        """
        async with self._conn() as conn:
            rows = await conn.fetch(sql, worker_id, now + lease_ttl, now, list(flow_keys), limit)
        return [decode_run(r) for r in rows]

    async def heartbeat(
        self, worker_id: str, run_ids: Sequence[str], now: float, lease_ttl: float
    ) -> set[str]:
        if not run_ids:
            return set()
        async with self._conn() as conn:
            rows = await conn.fetch(
                "UPDATE runs SET lease_expires_at=$1 WHERE id IN (SELECT id FROM runs "
                "WHERE lease_owner=$2 AND id = ANY($3::text[]) ORDER BY id FOR UPDATE) "
                "RETURNING id",
                now + lease_ttl,
                worker_id,
                list(run_ids),
            )
        return {r[0] for r in rows}

    async def release_runs(self, worker_id: str, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE runs SET lease_owner=NULL, lease_expires_at=NULL "
                "WHERE lease_owner=$1 AND id = ANY($2::text[])",
                worker_id,
                list(run_ids),
            )

    async def next_due_at(
        self, flow_keys: Sequence[str], *, include_leased: bool = False
    ) -> float | None:
        if not flow_keys:
            return None
        if include_leased:
            async with self._conn() as conn:
                scanned = await conn.fetchval(
                    "SELECT min(GREATEST(due_at, lease_expires_at)) FROM runs "
                    f"WHERE due_at IS NOT NULL AND status IN {_ACTIVE} "
                    "AND flow_key = ANY($1::text[])",
                    list(flow_keys),
                )
            return None if scanned is None else float(scanned)
        async with self._conn() as conn:
            # Leased runs are someone's: they are skipped (a dead worker's are found by
            # the next poll after their lease ends). Walks the due_at index.
            value = await conn.fetchval(
                "SELECT due_at FROM runs WHERE due_at IS NOT NULL AND lease_owner IS NULL "
                f"AND status IN {_ACTIVE} AND flow_key = ANY($1::text[]) "
                "ORDER BY due_at LIMIT 1",
                list(flow_keys),
            )
        return None if value is None else float(value)

    # -- checkpoints ------------------------------------------------------------------
    async def commit(self, checkpoints: Sequence[Checkpoint]) -> list[bool]:
        if not checkpoints:
            return []
        sql, args = _checkpoint_statement(checkpoints)
        notices = [
            checkpoint_notice(cp.run_id, cp.status, cp.state, cp.result, cp.error)
            for cp in checkpoints
        ]
        linked = [
            (index, cp, notice)
            for index, (cp, notice) in enumerate(zip(checkpoints, notices, strict=True))
            if cp.links or notice is not None
        ]
        if not linked:
            async with self._conn() as conn:
                rows = await conn.fetch(sql, *args)
            committed = {int(r[0]) for r in rows}
            return [i + 1 in committed for i in range(len(checkpoints))]
        async with self._conn(transaction=True) as conn:
            # Every row the batch touches, locked in id order first (as heartbeats and the
            # checkpoint statement lock theirs): a parent and a child that write to each
            # other at once queue up instead of deadlocking.
            await _lock(
                [
                    *(cp.run_id for cp in checkpoints),
                    *(target for _, cp, notice in linked for target in _targets(cp, notice)),
                ],
                conn,
            )
            rows = await conn.fetch(sql, *args)
            committed = {int(r[0]) for r in rows}
            for index, cp, notice in linked:
                if index + 1 in committed:
                    await _apply_links(conn, cp, [notice] if notice is not None else [])
        return [i + 1 in committed for i in range(len(checkpoints))]

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
        async with self._conn(transaction=True) as conn:
            row = await conn.fetchrow(
                "SELECT status, flow_name FROM runs WHERE id=$1 FOR NO KEY UPDATE", run_id
            )
            if row is None:
                raise RunNotFoundError(f"no run {run_id!r}", run_id=run_id)
            if RunStatus(row[0]) not in _RECEIVING:
                raise InvalidRunStateError(
                    f"cannot send {name!r} to a {row[0]} run", run_id=run_id, flow=row[1]
                )
            return await _queue_event(conn, run_id, name, payload, now, at, dedupe_key)

    async def next_event(
        self, run_id: str, names: Sequence[str] | None, now: float
    ) -> EventRecord | None:
        match = wait_match(names)
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {EVENT_COLUMNS} FROM run_events WHERE run_id=$1 AND status='pending' "
                "AND visible_at<=$2 "
                "AND ($3::text IS NULL OR position('|' || name || '|' in $3) > 0) "
                "ORDER BY visible_at, id LIMIT 1",
                run_id,
                now,
                match,
            )
        return None if row is None else decode_event(row)

    async def get_event(self, event_id: int) -> EventRecord | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {EVENT_COLUMNS} FROM run_events WHERE id=$1 AND status='pending'",
                event_id,
            )
        return None if row is None else decode_event(row)

    async def pending_events(self, run_id: str) -> list[EventRecord]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM run_events WHERE run_id=$1 AND status='pending' "
                "ORDER BY visible_at, id",
                run_id,
            )
        return [decode_event(r) for r in rows]

    # -- journal ----------------------------------------------------------------------
    async def journal(self, run_id: str, *, after_seq: int = 0) -> list[JournalEntry]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE run_id=$1 AND seq>$2 ORDER BY seq",
                run_id,
                after_seq,
            )
        return [decode_journal(r) for r in rows]

    async def journal_by_correlation(self, correlation_id: str) -> list[JournalEntry]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE run_id IN "
                f"(SELECT id FROM runs WHERE correlation_id=$1) ORDER BY at, run_id, seq",
                correlation_id,
            )
        return [decode_journal(r) for r in rows]

    async def outbox_count(self, *, published: bool | None = None) -> int:
        sql = "SELECT count(*) FROM outbox"
        if published is not None:
            sql += " WHERE published_at IS " + ("NOT NULL" if published else "NULL")
        async with self._conn() as conn:
            return int(await conn.fetchval(sql))


async def _create_run(conn: _Conn, run: NewRun) -> tuple[RunRecord, bool]:
    owner = run.owner or ""
    row = await conn.fetchrow(
        "INSERT INTO runs (id, flow_name, flow_version, flow_key, definition_hash, status, step, "
        "state, input, context, correlation_id, owner, idempotency_key, created_at, updated_at, "
        "due_at, lease_epoch, journal_seq) VALUES ($1,$2,$3,$4,$5,'pending',$6,$13::jsonb,"
        "$7::jsonb,$8::jsonb,$9,$10,$11,$12,$12,$12,0,1) "
        f"ON CONFLICT (owner, idempotency_key) DO NOTHING RETURNING {RUN_COLUMNS}",
        run.id,
        run.flow_name,
        run.flow_version,
        f"{run.flow_name}@{run.flow_version}",
        run.definition_hash,
        run.step,
        codec.dumps(run.input, what="run input"),
        codec.dumps(run.context, what="run context"),
        run.correlation_id,
        owner,
        run.idempotency_key,
        run.created_at,
        codec.dumps(run.state, what="run state"),
    )
    if row is None:
        existing = await conn.fetchrow(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE owner=$1 AND idempotency_key=$2",
            owner,
            run.idempotency_key,
        )
        assert existing is not None
        return decode_run(existing), False
    await conn.execute(
        "INSERT INTO journal (run_id, seq, kind, step, at, data, correlation_id) "
        "VALUES ($1,1,$2,NULL,$3,$4::jsonb,$5)",
        run.id,
        JournalKind.RUN_CREATED.value,
        run.created_at,
        codec.dumps(
            {
                "flow": run.flow_name,
                "version": run.flow_version,
                "definition_hash": run.definition_hash,
            }
        ),
        run.correlation_id,
    )
    return decode_run(row), True


def _targets(cp: Checkpoint, notice: RunMessage | None) -> list[str]:
    """The other runs a checkpoint writes to."""
    found = [c.run_id for c in cp.cancels] + [m.run_id for m in cp.messages]
    if notice is not None:
        found.append(notice.run_id)
    return found


async def _lock(run_ids: Sequence[str], conn: _Conn) -> None:
    if run_ids:
        await conn.execute(
            "SELECT 1 FROM (SELECT id FROM runs WHERE id = ANY($1::text[]) ORDER BY id "
            "FOR UPDATE) AS locked",
            sorted(set(run_ids)),
        )


async def _apply_links(conn: _Conn, cp: Checkpoint, notices: list[RunMessage]) -> None:
    """A checkpoint's writes to other runs: children, their cancels, messages."""
    for child in cp.children:
        if await conn.fetchval("SELECT 1 FROM runs WHERE id=$1", child.id) is None:
            await _create_run(conn, child)
    for cancel in cp.cancels:
        row = await conn.fetchrow(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=$1", cancel.run_id)
        if row is None:
            continue
        run = decode_run(row)
        try:
            change = cancel_change(run, cancel.reason, cancel.handler, cp.now)
        except InvalidRunStateError:
            continue  # ended or already cleaning up
        await _write_control(conn, run, change, cp.now)
    for message in [*cp.messages, *notices]:
        await _send_message(conn, message, cp.now)


async def _send_message(conn: _Conn, message: RunMessage, now: float) -> None:
    """Queue a message for its run, unless that run is gone or has ended."""
    status = await conn.fetchval("SELECT status FROM runs WHERE id=$1", message.run_id)
    if status is not None and RunStatus(status) in _RECEIVING:
        await _queue_event(
            conn, message.run_id, message.name, message.payload, now, now, message.dedupe_key
        )


async def _queue_event(
    conn: _Conn,
    run_id: str,
    name: str,
    payload: str,
    now: float,
    at: float,
    dedupe_key: str | None,
) -> int:
    """Insert a run event (once per dedupe key) and wake the run if it waits for it."""
    event_id = await conn.fetchval(
        "INSERT INTO run_events (run_id, name, payload, kind, status, visible_at, "
        "created_at, dedupe_key) VALUES ($1,$2,$3::jsonb,'event','pending',$4,$5,$6) "
        "ON CONFLICT (run_id, dedupe_key) DO NOTHING RETURNING id",
        run_id,
        name,
        payload,
        at,
        now,
        dedupe_key,
    )
    if event_id is None:
        return int(
            await conn.fetchval(
                "SELECT id FROM run_events WHERE run_id=$1 AND dedupe_key=$2",
                run_id,
                dedupe_key,
            )
        )
    await conn.execute(WAKE_ON_SEND, at, run_id, f"|{name}|")
    return int(event_id)


async def _write_control(conn: _Conn, run: RunRecord, change: ControlChange, now: float) -> None:
    """Write an operator's (or a parent's) change of ``run``, fencing out its worker."""
    seq = run.journal_seq + 1
    await conn.execute(
        "UPDATE runs SET status=$1, step=$2, state=$3::jsonb, due_at=$4, error=$5::jsonb, "
        "lease_owner=NULL, lease_expires_at=NULL, lease_epoch=lease_epoch+1, "
        "journal_seq=$6, updated_at=$7 WHERE id=$8",
        change.status.value,
        change.step,
        codec.dumps(change.state),
        change.due_at,
        None if change.error is None else codec.dumps(change.error),
        seq,
        now,
        run.id,
    )
    if change.cancel_events:
        await conn.execute(
            "UPDATE run_events SET status='cancelled' WHERE run_id=$1 AND status='pending'",
            run.id,
        )
    await conn.execute(
        "INSERT INTO journal (run_id, seq, kind, step, at, data, correlation_id) "
        "VALUES ($1,$2,$3,$4,$5,$6::jsonb,$7)",
        run.id,
        seq,
        change.journal_kind.value,
        change.step,
        now,
        codec.dumps(change.journal_data),
        run.correlation_id,
    )
    for message in change.messages:
        await _send_message(conn, message, now)


def _checkpoint_statement(cps: Sequence[Checkpoint]) -> tuple[str, list[Any]]:
    """The single statement (and its arguments) that commits a batch of checkpoints."""
    args: list[Any] = [
        [cp.run_id for cp in cps],
        [cp.lease_owner for cp in cps],
        [cp.lease_epoch for cp in cps],
        [cp.status.value for cp in cps],
        [cp.step for cp in cps],
        [cp.state for cp in cps],
        [cp.context for cp in cps],
        [cp.result for cp in cps],
        [cp.error for cp in cps],
        [cp.now for cp in cps],
        [cp.due_at for cp in cps],
        [cp.wait_names for cp in cps],
        [cp.wait_deadline for cp in cps],
        [cp.journal[-1].seq if cp.journal else None for cp in cps],
        [cp.release for cp in cps],
        [cp.lease_expires_at for cp in cps],
        # Each checkpoint's consumed event ids as an array literal (arrays of arrays
        # must be rectangular).
        [
            "{" + ",".join(map(str, cp.consumed_events)) + "}" if cp.consumed_events else None
            for cp in cps
        ],
        ["|" + "|".join(cp.cancelled_timers) + "|" if cp.cancelled_timers else None for cp in cps],
    ]
    ctes = [_CHECKPOINT_ROWS]

    def add(template: str, columns: list[list[Any]]) -> None:
        first = len(args) + 1
        args.extend(columns)
        ctes.append(template.format(*range(first, first + len(columns))))

    journal = [(i, e) for i, cp in enumerate(cps, 1) for e in cp.journal]
    if journal:
        add(
            _JOURNAL_CTE,
            [
                [i for i, _ in journal],
                [e.seq for _, e in journal],
                [e.kind for _, e in journal],
                [e.step for _, e in journal],
                [e.at for _, e in journal],
                [codec.dumps(e.data) for _, e in journal],
                [e.correlation_id for _, e in journal],
            ],
        )
    outbox = [(i, m) for i, cp in enumerate(cps, 1) for m in cp.outbox]
    if outbox:
        add(
            _OUTBOX_CTE,
            [
                [i for i, _ in outbox],
                [m.event_id for _, m in outbox],
                [m.topic for _, m in outbox],
                [m.type for _, m in outbox],
                [m.subject for _, m in outbox],
                [m.data for _, m in outbox],
                [codec.dumps(m.headers) for _, m in outbox],
            ],
        )
    timers = [(i, t) for i, cp in enumerate(cps, 1) for t in cp.timers]
    if timers:
        add(
            _TIMERS_CTE,
            [
                [i for i, _ in timers],
                [t.name for _, t in timers],
                [t.payload for _, t in timers],
                [t.timer_name for _, t in timers],
                [t.visible_at for _, t in timers],
            ],
        )
    letters = [(i, d) for i, cp in enumerate(cps, 1) for d in cp.dead_letters]
    if letters:
        add(DEAD_LETTERS_CTE, dead_letter_columns(letters))
    if any(cp.cancelled_timers for cp in cps):
        ctes.append(_CANCEL_CTE)
    if any(cp.consumed_events for cp in cps):
        ctes.append(_CONSUME_CTE)
    return "WITH " + ",".join(ctes) + "\nSELECT idx FROM u", args


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset round trip on every release: the store sets no session state
    (no SET, LISTEN or advisory locks), and asyncpg itself rolls back a connection that
    comes back inside a transaction."""


def _safe(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"
