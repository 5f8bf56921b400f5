"""Tables of the job store, shared by the store, the migrations and the broker.

Instants are `timestamptz` on PostgreSQL and REAL seconds since the epoch on SQLite, so
that lease and schedule arithmetic is plain addition on the database clock in both.
Use `db_now()` in SQL wherever an instant is needed; never a value from a worker's clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler, TypeCompiler
from sqlalchemy.sql.expression import ColumnElement, FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from conveyor.core.job import TERMINAL_STATES, JobState

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Instant(TypeDecorator[datetime]):
    """An aware UTC datetime: timestamptz on PostgreSQL, epoch seconds on SQLite."""

    impl = Float
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        return dialect.type_descriptor(Float())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
        return value.timestamp()

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return datetime.fromtimestamp(float(value), tz=UTC)


class Document(TypeDecorator[Any]):
    """JSON: jsonb on PostgreSQL, JSON text in a TEXT column on SQLite."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


@compiles(Document, "sqlite")
def _document_column_sqlite(element: Document, compiler: TypeCompiler, **kw: Any) -> str:
    # Declared JSON, a column would get NUMERIC affinity: SQLite would store the document
    # 14.0 as the integer 14. TEXT affinity keeps every document's text as it was written.
    return "TEXT"


class db_now(FunctionElement[datetime]):  # lower case: reads as a SQL function
    """The database clock, as an Instant (transaction time on PostgreSQL)."""

    type = Instant()
    inherit_cache = True


@compiles(db_now, "postgresql")
def _now_postgresql(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "now()"


_SQLITE_NOW = "round((julianday('now') - 2440587.5) * 86400.0, 3)"


@compiles(db_now, "sqlite")
def _now_sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # julianday('now') has millisecond precision; its epoch is 2440587.5 days before 1970.
    # Rounding drops the float noise of the conversion, so that an instant read back into a
    # datetime (whole microseconds) and bound again compares equal to the stored value.
    return _SQLITE_NOW


class db_now_plus(FunctionElement[datetime]):  # lower case: reads as a SQL function
    """The database clock plus a number of seconds (a bound value or a column)."""

    type = Instant()
    inherit_cache = True

    def __init__(self, seconds: ColumnElement[Any] | float) -> None:
        from sqlalchemy import literal

        argument = seconds if isinstance(seconds, ColumnElement) else literal(float(seconds))
        super().__init__(argument)


@compiles(db_now_plus, "postgresql")
def _now_plus_postgresql(element: db_now_plus, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"(now() + make_interval(secs => CAST({seconds} AS double precision)))"


@compiles(db_now_plus, "sqlite")
def _now_plus_sqlite(element: db_now_plus, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"round({_SQLITE_NOW} + ({seconds}), 6)"


_STATES = ", ".join(f"'{state.value}'" for state in JobState)
_TERMINAL = ", ".join(f"'{state.value}'" for state in sorted(TERMINAL_STATES))

jobs = Table(
    "conveyor_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(200), nullable=False),
    Column("task", String(200), nullable=False),
    Column("queue", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("args", Document, nullable=False),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False),
    Column("timeout", Float, nullable=True),
    Column("run_at", Instant, nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("started_at", Instant, nullable=True),
    Column("finished_at", Instant, nullable=True),
    Column("lease_token", String(64), nullable=True),
    Column("lease_expires_at", Instant, nullable=True),
    Column("worker_id", String(200), nullable=True),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("progress", Document, nullable=True),
    Column("result", Document, nullable=True),
    Column("errors", Document, nullable=False),
    Column("idempotency_key", String(255), nullable=True),
    Column("tags", Document, nullable=False),
    # A digest of the submission, to refuse an idempotency key reused for another job.
    Column("fingerprint", String(64), nullable=True),
    CheckConstraint(f"state IN ({_STATES})", name="state"),
    CheckConstraint("attempt >= 0 AND max_attempts >= 1", name="attempts"),
    # Ready jobs in claim order: highest priority first, FIFO within a priority.
    Index(
        "ix_conveyor_jobs_ready",
        "queue",
        text("priority DESC"),
        "run_at",
        "id",
        postgresql_where=text("state = 'queued'"),
        sqlite_where=text("state = 'queued'"),
    ),
    # The same order across every queue, for claims that name no queue.
    Index(
        "ix_conveyor_jobs_ready_all_queues",
        text("priority DESC"),
        "run_at",
        "id",
        postgresql_where=text("state = 'queued'"),
        sqlite_where=text("state = 'queued'"),
    ),
    Index(
        "ix_conveyor_jobs_due",
        "run_at",
        postgresql_where=text("state IN ('scheduled', 'retryable')"),
        sqlite_where=text("state IN ('scheduled', 'retryable')"),
    ),
    Index(
        "ix_conveyor_jobs_leases",
        "lease_expires_at",
        postgresql_where=text("state = 'running'"),
        sqlite_where=text("state = 'running'"),
    ),
    Index(
        "ix_conveyor_jobs_finished",
        "finished_at",
        postgresql_where=text(f"state IN ({_TERMINAL})"),
        sqlite_where=text(f"state IN ({_TERMINAL})"),
    ),
    Index(
        "ux_conveyor_jobs_idempotency",
        "tenant",
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
        sqlite_where=text("idempotency_key IS NOT NULL"),
    ),
    Index("ix_conveyor_jobs_listing_state", "tenant", "state", "id"),
)

tasks = Table(
    "conveyor_tasks",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("queue", String(200), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=True),
    Column("timeout", Float, nullable=True),
    Column("args_schema", Document, nullable=False),
    Column("options", Document, nullable=False),
    Column("updated_at", Instant, nullable=False),
)

workers = Table(
    "conveyor_workers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("queues", Document, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("running_jobs", Integer, nullable=False, server_default="0"),
    Column("alive", Boolean, nullable=False, server_default=text("true")),
    Column("started_at", Instant, nullable=False),
    Column("last_heartbeat_at", Instant, nullable=False),
)

# One row per leadership (the monitor); used on SQLite, where there are no advisory locks.
leaders = Table(
    "conveyor_leaders",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", Instant, nullable=False),
)

# API keys: only a digest of each key is kept (see core/access.py).
api_keys = Table(
    "conveyor_api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("tenant", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("revoked_at", Instant, nullable=True),
)

# Queues that were ever paused or resumed; a queue without a row is not paused.
queues = Table(
    "conveyor_queues",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("paused", Boolean, nullable=False),
    Column("updated_at", Instant, nullable=False),
)

# Monotonic counters for /metrics, each split over shards that writers pick at random, so
# that concurrent transactions rarely update the same row; readers sum over the shards.
counters = Table(
    "conveyor_counters",
    metadata,
    Column("name", Text, primary_key=True),
    Column("queue", Text, primary_key=True),
    Column("label", Text, primary_key=True),  # '' when the counter has none
    Column("shard", Integer, primary_key=True),
    Column("value", Float, nullable=False),
)
