"""The PostgreSQL store's event-bus half: mailbox delivery, the outbox relay, dead letters.

Deliveries are set-based (``unnest`` arrays): a batch of any size costs three statements.
Mailbox runs are created with ``ON CONFLICT (id) DO NOTHING`` in id order, so workers
delivering to the same new mailbox at once never fail or deadlock: one creates it, the
others find it. The store relay takes a transaction-scoped advisory lock, so one relay
runs at a time however many workers try; a crashed relay's lock goes with its connection.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg

from tripwright.engine import codec
from tripwright.engine.records import (
    DeadLetter,
    DeadLetterRecord,
    EventRecord,
    InboxDelivery,
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

__all__ = ["DEAD_LETTERS_CTE", "PostgresBusMixin", "dead_letter_columns"]

_Conn: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

#: The advisory lock key of the store relay ("tripwire" in ASCII, as a bigint).
_RELAY_LOCK = 0x7472697077697265

_CREATE_MAILBOXES = """
WITH m AS (
  SELECT DISTINCT ON (id) * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
      $5::text[], $6::text[], $7::text[]) AS m(id, flow_name, flow_version, hash, step, state, corr)
  ORDER BY id
), ins AS (
  INSERT INTO runs (id, flow_name, flow_version, flow_key, definition_hash, status, step, state,
    context, correlation_id, owner, created_at, updated_at, due_at, lease_epoch, journal_seq)
  SELECT m.id, m.flow_name, m.flow_version, m.flow_name || '@' || m.flow_version, m.hash,
    'waiting', m.step, m.state::jsonb, '{}'::jsonb, m.corr, '', $8, $8, $8, 0, 1
  FROM m ORDER BY m.id
  ON CONFLICT (id) DO NOTHING
  RETURNING id, flow_name, flow_version, definition_hash, correlation_id
)
INSERT INTO journal (run_id, seq, kind, step, at, data, correlation_id)
SELECT ins.id, 1, 'run_created', NULL, $8, jsonb_build_object('flow', ins.flow_name,
  'version', ins.flow_version, 'definition_hash', ins.definition_hash), ins.correlation_id
FROM ins
"""
_QUEUE_EVENTS = """
WITH e AS (
  INSERT INTO run_events (run_id, name, payload, kind, status, visible_at, created_at, dedupe_key)
  SELECT v.run_id, v.name, v.payload::jsonb, 'event', 'pending', $5, $5, v.dedupe
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
    AS v(run_id, name, payload, dedupe, idx)
  ORDER BY v.idx
  ON CONFLICT (run_id, dedupe_key) DO NOTHING
  RETURNING run_id, dedupe_key
), w AS (
  -- Wake the mailboxes as a send does: a waiting one becomes due; one a worker holds gets
  -- a hint its next waiting checkpoint reads from the row it locks. Rows lock in id order.
  UPDATE runs SET
    due_at = CASE WHEN status IN ('waiting','needs_attention') AND wait_names IS NULL
      THEN LEAST(due_at, $5) ELSE due_at END,
    event_hint = CASE WHEN lease_owner IS NOT NULL
      THEN LEAST(COALESCE(event_hint, $5), $5) ELSE event_hint END
  WHERE id IN (SELECT id FROM runs WHERE id IN (SELECT run_id FROM e) ORDER BY id FOR UPDATE)
)
SELECT run_id, dedupe_key FROM e
"""
_WAKE_ONE = """
UPDATE runs SET
  due_at = CASE WHEN status IN ('waiting','needs_attention') AND wait_names IS NULL
    THEN LEAST(due_at, $1) ELSE due_at END,
  event_hint = CASE WHEN lease_owner IS NOT NULL
    THEN LEAST(COALESCE(event_hint, $1), $1) ELSE event_hint END
WHERE id = $2
"""
#: A checkpoint's dead letters, as a CTE of the group-commit statement (see postgres.py).
DEAD_LETTERS_CTE = """
dl AS (
  INSERT INTO dead_letters (group_name, event_id, topic, kind, reason, handler, type, subject,
    envelope, raw, error, attempts, run_id, first_seen_at, failed_at)
  SELECT dv.grp, dv.event_id, dv.topic, dv.kind, dv.reason, dv.handler, dv.type, dv.subject,
    dv.envelope::jsonb, dv.raw, dv.error::jsonb, dv.attempts, dv.run_id, dv.first_seen, u.now
  FROM unnest(${0}::int[], ${1}::text[], ${2}::text[], ${3}::text[], ${4}::text[], ${5}::text[],
      ${6}::text[], ${7}::text[], ${8}::text[], ${9}::text[], ${10}::text[], ${11}::text[],
      ${12}::int[], ${13}::text[], ${14}::float8[])
    AS dv(cp, grp, event_id, topic, kind, reason, handler, type, subject, envelope, raw, error,
      attempts, run_id, first_seen)
  JOIN u ON u.idx = dv.cp
  ON CONFLICT (group_name, event_id) DO NOTHING
)"""
_INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (group_name, event_id, topic, kind, reason, handler, type, subject,
  envelope, raw, error, attempts, run_id, first_seen_at, failed_at)
VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9::jsonb,$10,$11::jsonb,$12,$13,$14,$15)
ON CONFLICT (group_name, event_id) DO NOTHING
"""


def dead_letter_columns(letters: Sequence[tuple[int, DeadLetter]]) -> list[list[Any]]:
    """The array arguments of :data:`DEAD_LETTERS_CTE` (checkpoint index, letter)."""
    return [
        [i for i, _ in letters],
        [d.group for _, d in letters],
        [d.event_id for _, d in letters],
        [d.topic for _, d in letters],
        [d.kind for _, d in letters],
        [d.reason for _, d in letters],
        [d.handler for _, d in letters],
        [d.type for _, d in letters],
        [d.subject for _, d in letters],
        [d.envelope for _, d in letters],
        [d.raw for _, d in letters],
        [d.error for _, d in letters],
        [d.attempts for _, d in letters],
        [d.run_id for _, d in letters],
        [d.first_seen_at for _, d in letters],
    ]


async def _deliver(conn: _Conn, deliveries: Sequence[InboxDelivery], now: float) -> list[bool]:
    if not deliveries:
        return []
    await conn.execute(
        _CREATE_MAILBOXES,
        [d.run_id for d in deliveries],
        [d.flow_name for d in deliveries],
        [d.flow_version for d in deliveries],
        [d.definition_hash for d in deliveries],
        [d.then for d in deliveries],
        [mailbox_state(d.then) for d in deliveries],
        [d.correlation_id for d in deliveries],
        now,
    )
    rows = await conn.fetch(
        _QUEUE_EVENTS,
        [d.run_id for d in deliveries],
        [d.name for d in deliveries],
        [d.payload for d in deliveries],
        [d.dedupe_key for d in deliveries],
        now,
    )
    fresh = {(r[0], r[1]) for r in rows}
    out = []
    for d in deliveries:
        key = (d.run_id, d.dedupe_key)
        out.append(key in fresh)
        fresh.discard(key)  # a duplicate within the batch is not fresh
    return out


class PostgresBusMixin:
    """Event-bus methods of :class:`PostgresStore` (see the Store port for the contract)."""

    @abstractmethod
    def _conn(
        self, *, transaction: bool = False
    ) -> contextlib.AbstractAsyncContextManager[_Conn]: ...

    async def append_outbox(self, messages: Sequence[OutboxMessage], now: float) -> None:
        if not messages:
            return
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO outbox (event_id, run_id, topic, type, subject, data, headers, "
                "created_at) SELECT e, '', t, ty, s, d::jsonb, h::jsonb, $7 FROM unnest("
                "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) "
                "WITH ORDINALITY AS v(e, t, ty, s, d, h, idx) ORDER BY idx "
                "ON CONFLICT (event_id) DO NOTHING",
                [m.event_id for m in messages],
                [m.topic for m in messages],
                [m.type for m in messages],
                [m.subject for m in messages],
                [m.data for m in messages],
                [codec.dumps(m.headers) for m in messages],
                now,
            )

    async def next_events(
        self,
        run_id: str,
        names: Sequence[str] | None,
        now: float,
        limit: int,
        *,
        timers: bool = False,
    ) -> list[EventRecord]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM run_events WHERE run_id=$1 AND status='pending' "
                "AND (kind='event' OR $5::boolean) AND visible_at<=$2 "
                "AND ($3::text IS NULL OR position('|' || name || '|' in $3) > 0) "
                "ORDER BY visible_at, id LIMIT $4",
                run_id,
                now,
                wait_match(names),
                limit,
                timers,
            )
        return [decode_event(r) for r in rows]

    async def deliver(self, deliveries: Sequence[InboxDelivery], now: float) -> list[bool]:
        if not deliveries:
            return []
        async with self._conn(transaction=True) as conn:
            return await _deliver(conn, deliveries, now)

    async def relay_outbox(self, route: Router, limit: int, now: float) -> int:
        async with self._conn(transaction=True) as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
                return 0
            rows = [
                decode_outbox(r)
                for r in await conn.fetch(
                    f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE published_at IS NULL "
                    "ORDER BY id LIMIT $1",
                    limit,
                )
            ]
            if not rows:
                return 0
            await _deliver(conn, [d for record in rows for d in route(record)], now)
            await conn.execute(
                "UPDATE outbox SET published_at=$1 WHERE id = ANY($2::int8[])",
                now,
                [r.id for r in rows],
            )
            return len(rows)

    async def claim_outbox(
        self, relay: str, owner: str, now: float, lease_ttl: float, limit: int
    ) -> tuple[int, list[OutboxRecord]] | None:
        async with self._conn() as conn:
            epoch = await conn.fetchval(
                "INSERT INTO relay_leases (name, owner, epoch, expires_at) VALUES ($1,$2,1,$3) "
                "ON CONFLICT (name) DO UPDATE SET epoch = CASE WHEN relay_leases.owner = "
                "EXCLUDED.owner THEN relay_leases.epoch ELSE relay_leases.epoch + 1 END, "
                "owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at "
                "WHERE relay_leases.owner = EXCLUDED.owner OR relay_leases.owner IS NULL "
                "OR relay_leases.expires_at <= $4 RETURNING epoch",
                relay,
                owner,
                now + lease_ttl,
                now,
            )
            if epoch is None:
                return None
            rows = await conn.fetch(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE published_at IS NULL "
                "ORDER BY id LIMIT $1",
                limit,
            )
        return int(epoch), [decode_outbox(r) for r in rows]

    async def mark_published(
        self, relay: str, owner: str, epoch: int, ids: Sequence[int], now: float
    ) -> bool:
        async with self._conn(transaction=True) as conn:
            held = await conn.fetchval(
                "SELECT 1 FROM relay_leases WHERE name=$1 AND owner=$2 AND epoch=$3 FOR SHARE",
                relay,
                owner,
                epoch,
            )
            if held is None:
                return False
            await conn.execute(
                "UPDATE outbox SET published_at=$1 WHERE id = ANY($2::int8[]) "
                "AND published_at IS NULL",
                now,
                list(ids),
            )
            return True

    async def add_dead_letter(self, letter: DeadLetter, now: float) -> int:
        async with self._conn(transaction=True) as conn:
            await conn.execute(
                _INSERT_DEAD_LETTER,
                letter.group,
                letter.event_id,
                letter.topic,
                letter.kind,
                letter.reason,
                letter.handler,
                letter.type,
                letter.subject,
                letter.envelope,
                letter.raw,
                letter.error,
                letter.attempts,
                letter.run_id,
                letter.first_seen_at,
                now,
            )
            return int(
                await conn.fetchval(
                    "SELECT id FROM dead_letters WHERE group_name=$1 AND event_id=$2",
                    letter.group,
                    letter.event_id,
                )
            )

    async def list_dead_letters(
        self, *, group: str | None = None, limit: int = 100
    ) -> list[DeadLetterRecord]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters "
                "WHERE ($1::text IS NULL OR group_name=$1) ORDER BY id LIMIT $2",
                group,
                limit,
            )
        return [decode_dead_letter(r) for r in rows]

    async def get_dead_letter(self, letter_id: int) -> DeadLetterRecord:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id=$1", letter_id
            )
        if row is None:
            raise DeadLetterNotFoundError(f"no dead letter {letter_id}")
        return decode_dead_letter(row)

    async def redrive_dead_letter(
        self, letter_id: int, delivery: InboxDelivery | None, now: float
    ) -> DeadLetterRecord:
        async with self._conn(transaction=True) as conn:
            row = await conn.fetchrow(
                f"DELETE FROM dead_letters WHERE id=$1 RETURNING {DEAD_LETTER_COLUMNS}",
                letter_id,
            )
            if row is None:
                raise DeadLetterNotFoundError(f"no dead letter {letter_id}")
            letter = decode_dead_letter(row)
            requeued = None
            if letter.run_id is not None:
                requeued = await conn.fetchval(
                    "UPDATE run_events SET status='pending', visible_at=$1 "
                    "WHERE run_id=$2 AND dedupe_key=$3 AND status<>'pending' RETURNING id",
                    now,
                    letter.run_id,
                    letter.event_id,
                )
                if requeued is not None:
                    await conn.execute(_WAKE_ONE, now, letter.run_id)
            if requeued is None:
                if delivery is None:
                    raise InvalidRunStateError(
                        f"dead letter {letter_id} has no valid envelope to redrive; drop it"
                    )
                await _deliver(conn, [delivery], now)
            return letter

    async def drop_dead_letter(self, letter_id: int) -> DeadLetterRecord:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"DELETE FROM dead_letters WHERE id=$1 RETURNING {DEAD_LETTER_COLUMNS}",
                letter_id,
            )
        if row is None:
            raise DeadLetterNotFoundError(f"no dead letter {letter_id}")
        return decode_dead_letter(row)

    async def prune_events(self, before: float, *, limit: int = 10_000) -> int:
        async with self._conn() as conn:
            result = await conn.execute(
                "DELETE FROM run_events WHERE id IN (SELECT id FROM run_events "
                "WHERE status IN ('consumed','cancelled') AND created_at < $1 LIMIT $2)",
                before,
                limit,
            )
        return int(result.split()[-1])
