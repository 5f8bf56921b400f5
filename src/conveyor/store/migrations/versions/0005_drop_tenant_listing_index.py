"""Drop the index of a tenant's jobs by id; listings read (tenant, state, id) per state.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

`ix_conveyor_jobs_listing` (tenant, id) served "a tenant's jobs, newest first" in one
index range. But a claim and a settlement each rewrite a job's row with a new state, and
PostgreSQL adds the new version to every index whose condition it meets: this index took
two entries per job in every drain, with `(tenant, state, id)` the largest cost per job
left on the server. Listings now read `(tenant, state, id)` one state at a time, each
range cut at the page size, and merge them (store/queries.py: newest_first).
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEX = "ix_conveyor_jobs_listing"


def upgrade() -> None:
    op.drop_index(INDEX, table_name="conveyor_jobs")


def downgrade() -> None:
    op.create_index(INDEX, "conveyor_jobs", ["tenant", "id"])
