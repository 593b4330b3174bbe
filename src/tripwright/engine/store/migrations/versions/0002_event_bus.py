"""Event bus: the dead-letter store and the outbox relay's lease.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.Text().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("group_name", sa.String(200), nullable=False),
        sa.Column("event_id", sa.String(300), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("handler", sa.String(200)),
        sa.Column("type", sa.String(200)),
        sa.Column("subject", sa.String(200)),
        # The envelope when it was a valid one; the raw body when it was not.
        sa.Column("envelope", JSON),
        sa.Column("raw", sa.Text()),
        sa.Column("error", JSON),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        # The mailbox run that gave up on the event (none for a message refused on arrival).
        sa.Column("run_id", sa.String(64)),
        sa.Column("first_seen_at", TIME),
        sa.Column("failed_at", TIME, nullable=False),
    )
    op.create_index(
        "uq_dead_letters_event", "dead_letters", ["group_name", "event_id"], unique=True
    )
    op.create_table(
        "relay_leases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(200)),
        sa.Column("epoch", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("expires_at", TIME),
    )


def downgrade() -> None:
    op.drop_table("relay_leases")
    op.drop_table("dead_letters")
