"""Drop the index of running jobs by worker, which no query reads any more.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

`ix_conveyor_jobs_held` (worker_id, of running jobs) served the first heartbeat, which
renewed "every running job of this worker". Renewals name their jobs since
(`renew(job_ids=...)`, found by primary key, the worker id only checked), and nothing else
looks jobs up by worker. Yet every claim wrote an entry into it: a claim rewrites the row
with a new state, so PostgreSQL adds the new version to every index whose condition it
meets.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEX = "ix_conveyor_jobs_held"


def upgrade() -> None:
    op.drop_index(INDEX, table_name="conveyor_jobs")


def downgrade() -> None:
    op.create_index(
        INDEX,
        "conveyor_jobs",
        ["worker_id"],
        postgresql_where=sa.text("state = 'running'"),
        sqlite_where=sa.text("state = 'running'"),
    )
