"""PgQueuer on PostgreSQL (its only production backend), durable tables (the default).

Workers: `pgq run --batch-size 20 --max-concurrent-tasks 100 --shutdown-on-listener-failure`
(its performance guide's pair for short jobs: the same 100 concurrent jobs as Conveyor, 20
dequeued per round trip; the flag is on its deployment checklist), one asyncpg connection per
worker, LISTEN/NOTIFY. The schema is installed as `pgq install` does, then `pgq autovac` (its
checklist). Bulk: `Queries.enqueue` with lists, one INSERT of many jobs.
"""

from __future__ import annotations

import sys
from typing import Any

import asyncpg
from pgqueuer.db import AsyncpgPoolDriver  # type: ignore[import-not-found]
from pgqueuer.queries import Queries  # type: ignore[import-not-found]

from bench.compare.system import Settings, WorkerProcesses
from bench.compare.systems.pgqueuer_tasks import DSN_VARIABLE, ENTRYPOINT

BATCH_SIZE = 20
MAX_CONCURRENT_TASKS = 100


class PgQueuerSystem:
    name = "pgqueuer"
    backend = "postgres"
    bulk = True

    def __init__(self, settings: Settings) -> None:
        self._dsn = settings.postgres_url
        self._pool: Any = None
        self._queries: Any = None

    async def _open(self) -> Any:
        if self._queries is None:
            # A pool for producers, as PgQueuer's tuning checklist says.
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=10)
            queries = Queries(AsyncpgPoolDriver(self._pool))
            if not await queries.schema_is_installed():
                await queries.install()
                await queries.optimize_autovacuum()
            self._queries = queries
        return self._queries

    async def reset(self) -> None:
        queries = await self._open()
        # Workers are stopped: truncating the queue leaves no job queued or picked; the log
        # tables go too, so that every step starts from the same empty tables.
        await queries.clear_queue()
        await queries.clear_queue_log()
        await queries.clear_statistics_log()

    async def enqueue_one(self) -> None:
        queries = await self._open()
        await queries.enqueue(ENTRYPOINT, None)

    async def enqueue_many(self, count: int) -> None:
        queries = await self._open()
        await queries.enqueue([ENTRYPOINT] * count, [None] * count, [0] * count)

    def workers(self, processes: int) -> WorkerProcesses:
        command = [
            sys.executable, "-m", "pgqueuer", "run",
            "bench.compare.systems.pgqueuer_tasks:create_pgqueuer",
            "--batch-size", str(BATCH_SIZE),
            "--max-concurrent-tasks", str(MAX_CONCURRENT_TASKS),
            "--shutdown-on-listener-failure",
            "--log-level", "WARNING",
        ]  # fmt: skip
        return WorkerProcesses(
            commands=[command] * processes,
            environment={DSN_VARIABLE: self._dsn},
            description=(
                f"{processes} x `pgq run --batch-size {BATCH_SIZE} "
                f"--max-concurrent-tasks {MAX_CONCURRENT_TASKS}`, durable tables"
            ),
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


def open_system(settings: Settings, variant: str) -> PgQueuerSystem:
    return PgQueuerSystem(settings)
