"""Autovacuum the jobs table by its churn, not by PostgreSQL's table-wide defaults.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Every job leaves two dead row versions behind it (the claim and the settle rewrite the
row), and dead versions in the ready and lease indexes slow every claim until a vacuum
removes them. PostgreSQL's defaults vacuum a table once a fifth of it is dead: 200 000
dead versions for a table of a million jobs. Here the jobs table is vacuumed after 1 000
plus 2 % dead, analyzed as often, and its vacuum is not throttled (the default throttling
lets a busy queue make dead rows faster than a vacuum removes them). A million-job drain
measured in bench/README.md slowed from ~10 000 to ~4 300 jobs/s with no vacuum at all.

PostgreSQL only: SQLite reuses freed pages without a vacuum. These settings take effect
where autovacuum runs (the default); a server with autovacuum switched off ignores them.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JOBS_AUTOVACUUM = {
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_analyze_threshold": "1000",
    "autovacuum_analyze_scale_factor": "0.02",
    "autovacuum_vacuum_cost_delay": "0",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    settings = ", ".join(f"{name} = {value}" for name, value in JOBS_AUTOVACUUM.items())
    op.execute(f"ALTER TABLE conveyor_jobs SET ({settings})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE conveyor_jobs RESET ({', '.join(JOBS_AUTOVACUUM)})")
