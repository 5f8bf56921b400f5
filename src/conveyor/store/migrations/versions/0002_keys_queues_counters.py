"""API keys, paused queues, counters for metrics, and submission fingerprints.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Types are spelled out here rather than imported from schema.py, so that later changes to
the schema module can never rewrite what this revision created.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def instant() -> sa.types.TypeEngine[Any]:
    # timestamptz on PostgreSQL; epoch seconds (REAL) on SQLite, so that arithmetic is addition.
    return sa.Float().with_variant(sa.DateTime(timezone=True), "postgresql")


def upgrade() -> None:
    # Nullable: jobs submitted before this revision have no fingerprint and match any repeat.
    op.add_column("conveyor_jobs", sa.Column("fingerprint", sa.String(64), nullable=True))
    create_api_keys()
    create_queues()
    create_counters()


def create_api_keys() -> None:
    op.create_table(
        "conveyor_api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", instant(), nullable=False),
        sa.Column("revoked_at", instant(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conveyor_api_keys")),
    )


def create_queues() -> None:
    op.create_table(
        "conveyor_queues",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("updated_at", instant(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_conveyor_queues")),
    )


def create_counters() -> None:
    op.create_table(
        "conveyor_counters",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        # DOUBLE PRECISION on PostgreSQL, REAL on SQLite: counts and sums of seconds.
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "name", "queue", "label", "shard", name=op.f("pk_conveyor_counters")
        ),
    )


def downgrade() -> None:
    for table in ("conveyor_counters", "conveyor_queues", "conveyor_api_keys"):
        op.drop_table(table)
    with op.batch_alter_table("conveyor_jobs") as batch:
        batch.drop_column("fingerprint")
