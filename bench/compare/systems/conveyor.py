"""Conveyor in its three shapes: SQLite, PostgreSQL, PostgreSQL + Redis.

Workers: `conveyor worker` with concurrency 100 (async handlers: concurrency costs nothing
while jobs wait) and the defaults otherwise (each worker runs a monitor; one leads).
"""

from __future__ import annotations

import sys

from sqlalchemy import text

from bench.compare.system import QUEUE, Settings, WorkerProcesses
from bench.compare.systems.conveyor_tasks import build_app
from conveyor import Conveyor
from conveyor.config import load_settings
from conveyor.store.engine import create_engine

CONCURRENCY = 100
REDIS_PREFIX = "conveyor-bench:"
TABLES = ("conveyor_jobs", "conveyor_counters")


class ConveyorSystem:
    bulk = True

    def __init__(self, settings: Settings, shape: str) -> None:
        self.name = {"sqlite": "conveyor-sqlite", "postgres": "conveyor-postgres"}.get(
            shape, "conveyor-postgres-redis"
        )
        self.backend = "sqlite" if shape == "sqlite" else "postgres"
        database_url = (
            f"sqlite:///{settings.sqlite_path}" if shape == "sqlite" else settings.postgres_url
        )
        self._environment = {"CONVEYOR_DATABASE_URL": database_url}
        if shape == "postgres+redis":
            self._environment |= {
                "CONVEYOR_REDIS_URL": settings.redis_url,
                "CONVEYOR_REDIS_PREFIX": REDIS_PREFIX,
            }
        self._database_url = database_url
        self._redis_url = settings.redis_url if shape == "postgres+redis" else None
        self._app: Conveyor = build_app(
            load_settings(
                database_url=database_url,
                redis_url=self._redis_url,
                redis_prefix=REDIS_PREFIX,
            )
        )
        self._migrated = False

    async def reset(self) -> None:
        if not self._migrated:
            await self._app.migrate()
            self._migrated = True
        engine = create_engine(self._database_url)
        try:
            async with engine.begin() as connection:
                if self.backend == "postgres":
                    # As the PostgreSQL peers' resets do: every step starts from empty tables,
                    # not from the dead rows of the last (this machine runs no autovacuum).
                    await connection.execute(text(f"TRUNCATE {', '.join(TABLES)}"))
                else:
                    for table in TABLES:
                        await connection.execute(text(f"DELETE FROM {table}"))
        finally:
            await engine.dispose()
        if self._redis_url is not None:
            await self._empty_redis()

    async def _empty_redis(self) -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(self._redis_url or "")
        try:
            keys = [key async for key in client.scan_iter(match=f"{REDIS_PREFIX}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()
        # As a monitor would: the reconciler refills Redis from the (empty) store and marks
        # it complete, so that claims go through Redis alone from the start.
        broker = await self._app.broker()
        while (await broker.reconcile(limit=1000)).catching_up:
            pass

    async def enqueue_one(self) -> None:
        await self._app.enqueue("bench.noop")

    async def enqueue_many(self, count: int) -> None:
        await self._app.enqueue_many("bench.noop", [{}] * count)

    def workers(self, processes: int) -> WorkerProcesses:
        command = [
            sys.executable,
            "-m",
            "conveyor",
            "worker",
            "--app",
            "bench.compare.systems.conveyor_tasks:app",
            "--queues",
            QUEUE,
            "--concurrency",
            str(CONCURRENCY),
            "--log-level",
            "warning",
        ]
        return WorkerProcesses(
            commands=[command] * processes,
            environment=self._environment,
            description=f"{processes} x `conveyor worker --concurrency {CONCURRENCY}`",
        )

    async def close(self) -> None:
        await self._app.close()


def open_system(settings: Settings, variant: str) -> ConveyorSystem:
    return ConveyorSystem(settings, variant)
