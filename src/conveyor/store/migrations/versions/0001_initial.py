"""The initial job store: jobs, tasks, workers and leaders.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Types are spelled out here rather than imported from schema.py, so that later changes to
the schema module can never rewrite what this revision created.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATES = "'scheduled', 'queued', 'running', 'retryable', 'completed', 'failed', 'cancelled'"
TERMINAL = "'cancelled', 'completed', 'failed'"


def instant() -> sa.types.TypeEngine[Any]:
    # timestamptz on PostgreSQL; epoch seconds (REAL) on SQLite, so that arithmetic is addition.
    return sa.Float().with_variant(sa.DateTime(timezone=True), "postgresql")


def document() -> sa.types.TypeEngine[Any]:
    # TEXT on SQLite: a column declared JSON gets NUMERIC affinity there, and SQLite would
    # store the document 14.0 as the integer 14.
    return sa.Text().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    create_jobs()
    create_job_indexes()
    create_tasks()
    create_workers()
    create_leaders()


def create_jobs() -> None:
    op.create_table(
        "conveyor_jobs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("args", document(), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("timeout", sa.Float(), nullable=True),
        sa.Column("run_at", instant(), nullable=False),
        sa.Column("created_at", instant(), nullable=False),
        sa.Column("started_at", instant(), nullable=True),
        sa.Column("finished_at", instant(), nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", instant(), nullable=True),
        sa.Column("worker_id", sa.String(200), nullable=True),
        sa.Column(
            "cancel_requested", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("progress", document(), nullable=True),
        sa.Column("result", document(), nullable=True),
        sa.Column("errors", document(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("tags", document(), nullable=False),
        sa.CheckConstraint(f"state IN ({STATES})", name=op.f("ck_conveyor_jobs_state")),
        sa.CheckConstraint(
            "attempt >= 0 AND max_attempts >= 1", name=op.f("ck_conveyor_jobs_attempts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conveyor_jobs")),
    )


def partial_index(name: str, columns: list[str | sa.TextClause], where: str) -> None:
    op.create_index(
        op.f(name),
        "conveyor_jobs",
        columns,
        postgresql_where=sa.text(where),
        sqlite_where=sa.text(where),
    )


def create_job_indexes() -> None:
    ready: list[str | sa.TextClause] = ["queue", sa.text("priority DESC"), "run_at", "id"]
    partial_index("ix_conveyor_jobs_ready", ready, "state = 'queued'")
    # The same order across every queue, for claims that name no queue.
    partial_index("ix_conveyor_jobs_ready_all_queues", ready[1:], "state = 'queued'")
    partial_index("ix_conveyor_jobs_due", ["run_at"], "state IN ('scheduled', 'retryable')")
    partial_index("ix_conveyor_jobs_leases", ["lease_expires_at"], "state = 'running'")
    partial_index("ix_conveyor_jobs_held", ["worker_id"], "state = 'running'")
    partial_index("ix_conveyor_jobs_finished", ["finished_at"], f"state IN ({TERMINAL})")
    op.create_index(
        op.f("ux_conveyor_jobs_idempotency"),
        "conveyor_jobs",
        ["tenant", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index(op.f("ix_conveyor_jobs_listing"), "conveyor_jobs", ["tenant", "id"])
    op.create_index(
        op.f("ix_conveyor_jobs_listing_state"), "conveyor_jobs", ["tenant", "state", "id"]
    )


def create_tasks() -> None:
    op.create_table(
        "conveyor_tasks",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=True),
        sa.Column("timeout", sa.Float(), nullable=True),
        sa.Column("args_schema", document(), nullable=False),
        sa.Column("options", document(), nullable=False),
        sa.Column("updated_at", instant(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_conveyor_tasks")),
    )


def create_workers() -> None:
    op.create_table(
        "conveyor_workers",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", document(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("running_jobs", sa.Integer(), server_default="0", nullable=False),
        sa.Column("alive", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("started_at", instant(), nullable=False),
        sa.Column("last_heartbeat_at", instant(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conveyor_workers")),
    )


def create_leaders() -> None:
    op.create_table(
        "conveyor_leaders",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", instant(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_conveyor_leaders")),
    )


def downgrade() -> None:
    for table in ("conveyor_leaders", "conveyor_workers", "conveyor_tasks", "conveyor_jobs"):
        op.drop_table(table)
