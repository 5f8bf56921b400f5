"""Procrastinate on PostgreSQL (its only backend).

Workers: `procrastinate worker --concurrency=100` (async task: the same 100 concurrent jobs
as Conveyor), listening for NOTIFY (the default) and the defaults otherwise (5 s polling
fallback, finished jobs kept); a pool of up to 20 connections per process (see
`procrastinate_tasks`). Bulk: `Task.batch_defer_async`, one INSERT of many jobs.
"""

from __future__ import annotations

import sys

from bench.compare.system import QUEUE, Settings, WorkerProcesses
from bench.compare.systems.procrastinate_tasks import DSN_VARIABLE, TASK, build_app

CONCURRENCY = 100
PRODUCER_POOL_SIZE = 4
TABLES = (
    "procrastinate_events",
    "procrastinate_periodic_defers",
    "procrastinate_jobs",
    "procrastinate_workers",
)


class ProcrastinateSystem:
    name = "procrastinate"
    backend = "postgres"
    bulk = True

    def __init__(self, settings: Settings) -> None:
        self._dsn = settings.postgres_url
        # One producer awaiting each call needs one connection; psycopg's default pool (4)
        # keeps the workers' 2 x 21 connections well within PostgreSQL's 100.
        self._app = build_app(self._dsn, min_size=PRODUCER_POOL_SIZE, max_size=PRODUCER_POOL_SIZE)
        self._opened = False

    async def reset(self) -> None:
        if not self._opened:
            await self._app.open_async()
            self._opened = True
            found = await self._app.connector.execute_query_one_async(
                query="SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS installed"
            )
            if not found["installed"]:
                await self._app.schema_manager.apply_schema_async()
        # Workers are stopped: emptying the tables leaves no job queued or running.
        await self._app.connector.execute_query_async(query=f"TRUNCATE {', '.join(TABLES)} CASCADE")

    async def enqueue_one(self) -> None:
        await self._app.tasks[TASK].defer_async()

    async def enqueue_many(self, count: int) -> None:
        await self._app.tasks[TASK].batch_defer_async(*({} for _ in range(count)))

    def workers(self, processes: int) -> WorkerProcesses:
        command = [
            sys.executable, "-m", "procrastinate",
            "--app=bench.compare.systems.procrastinate_tasks.app",
            "--log-level=warning",
            "worker", f"--queues={QUEUE}", f"--concurrency={CONCURRENCY}",
        ]  # fmt: skip
        return WorkerProcesses(
            commands=[command] * processes,
            environment={DSN_VARIABLE: self._dsn},
            description=(
                f"{processes} x `procrastinate worker --concurrency={CONCURRENCY}`, "
                "pool of up to 20 connections, LISTEN/NOTIFY"
            ),
        )

    async def close(self) -> None:
        if self._opened:
            await self._app.close_async()


def open_system(settings: Settings, variant: str) -> ProcrastinateSystem:
    return ProcrastinateSystem(settings)
