"""Engine core: runs, journal, run events (timers and signals), outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.Text().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("flow_name", sa.String(200), nullable=False),
        sa.Column("flow_version", sa.String(64), nullable=False),
        sa.Column("flow_key", sa.String(270), nullable=False),
        sa.Column("definition_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.String(200)),
        sa.Column("state", JSON, nullable=False),
        sa.Column("input", JSON),
        sa.Column("context", JSON, nullable=False),
        sa.Column("result", JSON),
        sa.Column("error", JSON),
        sa.Column("correlation_id", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False, server_default=""),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("due_at", TIME),
        sa.Column("wait_names", sa.Text()),
        sa.Column("wait_deadline", TIME),
        # Earliest event sent while the run was leased: a PostgreSQL checkpoint that turns
        # the run to waiting reads it from the row it locks, so a send that commits during
        # the checkpoint cannot be missed.
        sa.Column("event_hint", TIME),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", TIME),
        sa.Column("lease_epoch", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("journal_seq", sa.Integer(), nullable=False, server_default="0"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Room on each page for HOT updates: a step checkpoint changes no indexed column,
        # so PostgreSQL can update the row without touching any index.
        op.execute("ALTER TABLE runs SET (fillfactor = 70)")
    op.create_index("ix_runs_due_at", "runs", ["due_at"])
    op.create_index("ix_runs_flow_status", "runs", ["flow_name", "status", "created_at"])
    op.create_index("ix_runs_status_created", "runs", ["status", "created_at"])
    op.create_index("ix_runs_correlation", "runs", ["correlation_id"])
    op.create_index("uq_runs_idempotency", "runs", ["owner", "idempotency_key"], unique=True)

    op.create_table(
        "journal",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("step", sa.String(200)),
        sa.Column("at", TIME, nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("correlation_id", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_journal"),
    )
    # No index on journal.correlation_id: queries by correlation go through the runs
    # index, which keeps every journal insert (the hottest write) to one index.

    op.create_table(
        "run_events",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("payload", JSON),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("timer_name", sa.String(200)),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("visible_at", TIME, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("dedupe_key", sa.String(200)),
    )
    op.create_index("ix_run_events_pending", "run_events", ["run_id", "status", "visible_at"])
    op.create_index("uq_run_events_dedupe", "run_events", ["run_id", "dedupe_key"], unique=True)

    op.create_table(
        "outbox",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(300), nullable=False, unique=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(200)),
        sa.Column("data", JSON, nullable=False),
        sa.Column("headers", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("published_at", TIME),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "id"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("run_events")
    op.drop_table("journal")
    op.drop_table("runs")
