"""arq on Redis.

Workers: one `arq bench.compare.systems.arq_tasks.WorkerSettings` process per worker process
(arq has no multi-process option: its docs run one process per worker), max_jobs 100 (its
concurrency knob for async jobs, as Conveyor's) and the defaults otherwise: poll_delay 0.5 s
(arq polls the queue's sorted set), results kept 1 h, logging at WARNING.
arq has no bulk enqueue.
"""

from __future__ import annotations

import sys
from typing import Any

from arq import create_pool  # type: ignore[import-not-found]
from arq.connections import RedisSettings  # type: ignore[import-not-found]

from bench.compare.system import QUEUE, Settings, WorkerProcesses
from bench.compare.systems.arq_tasks import MAX_JOBS, REDIS_URL_VARIABLE


class ArqSystem:
    name = "arq"
    backend = "redis"
    bulk = False

    def __init__(self, settings: Settings) -> None:
        self._redis_url = settings.redis_url
        self._pool: Any = None

    async def _connected(self) -> Any:
        if self._pool is None:
            self._pool = await create_pool(
                RedisSettings.from_dsn(self._redis_url), default_queue_name=QUEUE
            )
        return self._pool

    async def reset(self) -> None:
        pool = await self._connected()
        await pool.flushdb()

    async def enqueue_one(self) -> None:
        pool = await self._connected()
        await pool.enqueue_job("noop")

    async def enqueue_many(self, count: int) -> None:
        raise NotImplementedError("arq has no bulk enqueue")

    def workers(self, processes: int) -> WorkerProcesses:
        command = [
            sys.executable,
            "-m",
            "arq",
            "bench.compare.systems.arq_tasks.WorkerSettings",
            "--custom-log-dict",
            "bench.compare.systems.arq_tasks.LOGGING",
        ]
        return WorkerProcesses(
            commands=[command] * processes,
            environment={REDIS_URL_VARIABLE: self._redis_url},
            description=f"{processes} x `arq WorkerSettings` (max_jobs {MAX_JOBS})",
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()


def open_system(settings: Settings, variant: str) -> ArqSystem:
    return ArqSystem(settings)
