"""SqlJobStore: the JobStore on SQLite (aiosqlite) or PostgreSQL (asyncpg).

The class owns connections and transactions and turns connection failures into
StoreUnavailable; the statements themselves live in the modules it delegates to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from conveyor.core.access import ApiKey
from conveyor.core.job import DEFAULT_TENANT, Job, NewJob
from conveyor.ports import (
    Claim,
    Enqueued,
    JobCounts,
    JobFilter,
    JobPage,
    JobStats,
    Maintenance,
    MetricsSnapshot,
    ProgressUpdate,
    QueueInfo,
    Renewal,
    Settlement,
    TaskInfo,
    WorkerInfo,
)
from conveyor.store import (
    actions,
    claims,
    keys,
    maintenance,
    metrics,
    queries,
    queues,
    ready,
    registry,
    stats,
)
from conveyor.store.engine import (
    create_engine,
    is_unavailable,
    reader,
    sqlite_file_connector,
    unavailable,
)
from conveyor.store.enqueue import in_chunks, insert_in_chunks, insert_jobs
from conveyor.store.leadership import leadership_for
from conveyor.store.migrate import prepare_schema
from conveyor.store.notify import NOTIFY_CHANNEL
from conveyor.store.ready import ReadyPage, ReadyPosition
from conveyor.store.sqlite_writer import Operation, SqliteWriter
from conveyor.store.statements import AlchemyStatements

if TYPE_CHECKING:
    from conveyor.store.direct import DirectConnections

__all__ = ["NOTIFY_CHANNEL", "SqlJobStore"]

T = TypeVar("T")


class SqlJobStore:
    """The durable source of truth. Every state change is one conditional statement."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # SQLite has one writer at a time. This process's writers take turns here, in
        # arrival order, instead of in SQLite's busy handler, which polls with growing sleeps.
        self._write_turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._reader = reader(engine)
        # The hot writes bypass SQLAlchemy's execution: on asyncpg for PostgreSQL (see
        # direct.py), on a thread of their own for a SQLite file (see sqlite_writer.py).
        self._direct = _direct_connections(engine)
        self._sqlite_writer = _sqlite_writer(engine)
        self._leadership = leadership_for(engine)

    @classmethod
    async def open(cls, url: str) -> SqlJobStore:
        """Open the store at `url`: SQLite migrates itself; PostgreSQL must be at head."""
        engine = create_engine(url)
        try:
            await prepare_schema(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def dialect_name(self) -> str:
        return self._engine.dialect.name

    # connections -------------------------------------------------------------------
    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            if is_unavailable(error):
                raise unavailable(error, self._engine.url) from error
            raise

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        async with self._write_turn or contextlib.nullcontext():
            with self._translated():
                async with self._engine.begin() as connection:
                    yield connection

    async def _single_write(self, operation: Operation[T], *, repeatable: bool) -> T:
        """A hot write, as one transaction: its statements straight on asyncpg (PostgreSQL,
        each one autocommitted, see direct.py), or in one hop to the writer thread (a SQLite
        file, see sqlite_writer.py), else in a transaction of its own, in its turn.
        `repeatable`: harmless to run twice, so retried once if the connection dies under it."""
        with self._translated():
            if self._direct is not None:
                return await operation(self._direct.statements(repeatable=repeatable))
            if self._sqlite_writer is not None:
                return await self._sqlite_writer.run(operation)
        async with self._writing() as connection:
            return await operation(AlchemyStatements(connection))

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        with self._translated():
            async with self._reader.connect() as connection:
                yield connection

    # producers ---------------------------------------------------------------------
    async def enqueue(self, job: NewJob, *, connection: Any = None) -> Enqueued:
        if connection is None:
            return (await self._insert([job]))[0]
        if not isinstance(connection, AsyncConnection):
            raise TypeError("connection must be a SQLAlchemy AsyncConnection")
        # The caller's transaction: the job exists if and only if the caller commits.
        with self._translated():
            return (await insert_jobs(AlchemyStatements(connection), [job]))[0]

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        if not jobs:
            return []
        return await self._insert(jobs)

    async def _insert(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        if self._direct is not None and in_chunks(jobs):
            # A large batch, built chunk by chunk as the chunks go (AlikeJobs).
            with self._translated():
                async with self._direct.transaction() as transaction:
                    return await insert_in_chunks(transaction, jobs)
        jobs = list(jobs)  # every job built (and validated) before the database sees one
        # Without idempotency keys an insert is one statement (see insert_jobs). With keys,
        # a conflict found after the insert must roll it back: that takes a transaction.
        if any(job.idempotency_key is not None for job in jobs):
            async with self._writing() as connection:
                return await insert_jobs(AlchemyStatements(connection), jobs)
        return await self._single_write(partial(insert_jobs, submitted=jobs), repeatable=False)

    # workers -----------------------------------------------------------------------
    async def claim(
        self, *, worker_id: str, queues: Collection[str], limit: int, lease_seconds: float
    ) -> list[Claim]:
        claiming = partial(
            claims.claim,
            worker_id=worker_id,
            queues=queues,
            limit=limit,
            lease_seconds=lease_seconds,
        )
        return await self._single_write(claiming, repeatable=True)

    async def claim_ids(
        self, *, worker_id: str, job_ids: Sequence[str], lease_seconds: float
    ) -> list[Claim]:
        if not job_ids:
            return []
        claiming = partial(
            claims.claim_ids, worker_id=worker_id, job_ids=job_ids, lease_seconds=lease_seconds
        )
        return await self._single_write(claiming, repeatable=True)

    async def renew(
        self, *, worker_id: str, job_ids: Collection[str], lease_seconds: float
    ) -> Renewal:
        renewing = partial(
            claims.renew, worker_id=worker_id, job_ids=job_ids, lease_seconds=lease_seconds
        )
        return await self._single_write(renewing, repeatable=True)

    async def settle(self, settlements: Sequence[Settlement]) -> frozenset[str]:
        if not settlements:
            return frozenset()
        settling = partial(claims.settle, settlements=settlements)
        return await self._single_write(settling, repeatable=True)  # one on PostgreSQL

    async def record_progress(self, updates: Sequence[ProgressUpdate]) -> frozenset[str]:
        if not updates:
            return frozenset()
        recording = partial(claims.record_progress, updates=updates)
        return await self._single_write(recording, repeatable=True)

    # users -------------------------------------------------------------------------
    async def get(self, job_id: str, *, tenant: str | None = DEFAULT_TENANT) -> Job:
        async with self._reading() as connection:
            return await queries.get(connection, job_id, tenant)

    async def list_jobs(
        self, job_filter: JobFilter, *, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        async with self._reading() as connection:
            return await queries.list_jobs(connection, job_filter, limit=limit, cursor=cursor)

    async def counts(self, *, tenant: str | None = DEFAULT_TENANT) -> JobCounts:
        async with self._reading() as connection:
            return await queries.counts(connection, tenant)

    async def cancel(self, job_id: str, *, tenant: str | None = DEFAULT_TENANT) -> Job:
        async with self._writing() as connection:
            return await actions.cancel(connection, job_id, tenant)

    async def retry(self, job_id: str, *, tenant: str | None = DEFAULT_TENANT) -> Job:
        async with self._writing() as connection:
            return await actions.retry(connection, job_id, tenant)

    async def delete(self, job_id: str, *, tenant: str | None = DEFAULT_TENANT) -> None:
        async with self._writing() as connection:
            await actions.delete_job(connection, job_id, tenant)

    # queues, statistics, metrics ---------------------------------------------------
    async def pause_queue(self, name: str) -> None:
        async with self._writing() as connection:
            await queues.set_paused(connection, name, paused=True)

    async def resume_queue(self, name: str) -> None:
        async with self._writing() as connection:
            await queues.set_paused(connection, name, paused=False)

    async def paused_queues(self) -> frozenset[str]:
        """The names of the paused queues (id-based brokers skip them before claiming)."""
        async with self._reading() as connection:
            return await queues.paused_names(connection)

    async def ready_page(
        self, *, after: ReadyPosition | None, limit: int, ready_for_seconds: float
    ) -> ReadyPage:
        """Queued jobs in claim order, a page at a time (id-based brokers' reconcilers)."""
        async with self._reading() as connection:
            return await ready.ready_page(
                connection, after=after, limit=limit, ready_for_seconds=ready_for_seconds
            )

    async def queued_among(self, job_ids: Sequence[str]) -> frozenset[str]:
        if not job_ids:
            return frozenset()
        async with self._reading() as connection:
            return await ready.queued_among(connection, job_ids)

    async def list_queues(self, *, tenant: str | None = DEFAULT_TENANT) -> list[QueueInfo]:
        async with self._reading() as connection:
            return await queues.list_queues(connection, tenant)

    async def stats(
        self, *, tenant: str | None = DEFAULT_TENANT, window_seconds: float = 900.0
    ) -> JobStats:
        async with self._reading() as connection:
            return await stats.stats(connection, tenant, window_seconds)

    async def metrics(self) -> MetricsSnapshot:
        async with self._reading() as connection:
            return await metrics.metrics(connection)

    # API keys ----------------------------------------------------------------------
    async def create_api_key(self, key: ApiKey) -> ApiKey:
        async with self._writing() as connection:
            return await keys.create_api_key(connection, key)

    async def find_api_key(self, key_id: str) -> ApiKey | None:
        async with self._reading() as connection:
            return await keys.find_api_key(connection, key_id)

    async def list_api_keys(self) -> list[ApiKey]:
        async with self._reading() as connection:
            return await keys.list_api_keys(connection)

    async def revoke_api_key(self, key_id: str) -> ApiKey:
        async with self._writing() as connection:
            return await keys.revoke_api_key(connection, key_id)

    # monitor -----------------------------------------------------------------------
    async def promote_due(self, *, limit: int) -> Maintenance:
        async with self._writing() as connection:
            return await maintenance.promote_due(connection, limit=limit)

    async def rescue_expired(self, *, limit: int) -> Maintenance:
        async with self._writing() as connection:
            return await maintenance.rescue_expired(connection, limit=limit)

    async def prune(self, *, older_than_seconds: float, limit: int) -> int:
        async with self._writing() as connection:
            return await maintenance.prune(
                connection, older_than_seconds=older_than_seconds, limit=limit
            )

    async def try_lead(self, *, holder: str, ttl_seconds: float) -> bool:
        with self._translated():
            return await self._leadership.try_lead(holder=holder, ttl_seconds=ttl_seconds)

    async def resign(self, *, holder: str) -> None:
        with self._translated():
            await self._leadership.resign(holder=holder)

    # registry and liveness ---------------------------------------------------------
    async def register_tasks(self, tasks: Sequence[TaskInfo]) -> None:
        async with self._writing() as connection:
            await registry.register_tasks(connection, tasks)

    async def list_tasks(self) -> list[TaskInfo]:
        async with self._reading() as connection:
            return await registry.list_tasks(connection)

    async def get_task(self, name: str) -> TaskInfo | None:
        async with self._reading() as connection:
            return await registry.get_task(connection, name)

    async def register_worker(self, worker: WorkerInfo) -> None:
        async with self._writing() as connection:
            await registry.register_worker(connection, worker)

    async def worker_heartbeat(self, *, worker_id: str, running_jobs: int) -> None:
        async with self._writing() as connection:
            await registry.worker_heartbeat(
                connection, worker_id=worker_id, running_jobs=running_jobs
            )

    async def deregister_worker(self, *, worker_id: str) -> None:
        async with self._writing() as connection:
            await registry.deregister_worker(connection, worker_id=worker_id)

    async def mark_dead_workers(self, *, silent_for_seconds: float) -> int:
        async with self._writing() as connection:
            return await registry.mark_dead_workers(
                connection, silent_for_seconds=silent_for_seconds
            )

    async def list_workers(self, *, include_dead: bool = False) -> list[WorkerInfo]:
        async with self._reading() as connection:
            return await registry.list_workers(connection, include_dead=include_dead)

    # lifecycle ---------------------------------------------------------------------
    async def ping(self) -> None:
        async with self._reading() as connection:
            await connection.execute(select(1))

    async def close(self) -> None:
        await self._leadership.close()
        if self._direct is not None:
            await self._direct.close()
        if self._sqlite_writer is not None:
            self._sqlite_writer.close()
        await self._engine.dispose()


def _direct_connections(engine: AsyncEngine) -> DirectConnections | None:
    if engine.dialect.name != "postgresql":
        return None
    # Imported here: asyncpg is installed only where PostgreSQL is used.
    from conveyor.store.direct import DirectConnections
    from conveyor.store.engine import POSTGRES_CONNECT_TIMEOUT_SECONDS, POSTGRES_POOL_SIZE

    return DirectConnections(
        engine.url, size=POSTGRES_POOL_SIZE, connect_timeout=POSTGRES_CONNECT_TIMEOUT_SECONDS
    )


def _sqlite_writer(engine: AsyncEngine) -> SqliteWriter | None:
    if engine.dialect.name != "sqlite":
        return None
    connect = sqlite_file_connector(engine.url)
    return None if connect is None else SqliteWriter(connect)
