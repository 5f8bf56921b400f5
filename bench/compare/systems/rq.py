"""RQ on Redis.

Workers: one `rq worker` process per worker process, as RQ's docs deploy it (several
workers under a process manager; its `worker-pool` is marked beta). Each worker forks a
work horse per job, RQ's default `Worker` class, for isolation: one job at a time per
worker, in the horse (peak memory counts the horses). Otherwise RQ's defaults: results kept
500 s (a job's hash is RQ's record of it, as Conveyor keeps its rows), logging at WARNING.
Bulk: `Queue.enqueue_many`, which writes all the jobs in one Redis pipeline.
"""

from __future__ import annotations

import sys
from typing import Any

from redis import Redis
from rq import Queue  # type: ignore[import-not-found]

from bench.compare.system import QUEUE, Settings, WorkerProcesses
from bench.compare.systems.rq_tasks import noop


class RqSystem:
    name = "rq"
    backend = "redis"
    bulk = True

    def __init__(self, settings: Settings) -> None:
        self._redis_url = settings.redis_url
        self._connection: Any = Redis.from_url(settings.redis_url)
        self._queue: Any = Queue(QUEUE, connection=self._connection)

    async def reset(self) -> None:
        self._connection.flushdb()

    async def enqueue_one(self) -> None:
        # Synchronous, as RQ's API is: one call, one job written to Redis.
        self._queue.enqueue(noop)

    async def enqueue_many(self, count: int) -> None:
        self._queue.enqueue_many([Queue.prepare_data(noop) for _ in range(count)])

    def workers(self, processes: int) -> WorkerProcesses:
        command = [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--url",
            self._redis_url,
            "--logging_level",
            "WARNING",
            QUEUE,
        ]
        return WorkerProcesses(
            commands=[command] * processes,
            description=f"{processes} x `rq worker` (a forked work horse per job)",
        )

    async def close(self) -> None:
        self._connection.close()


def open_system(settings: Settings, variant: str) -> RqSystem:
    return RqSystem(settings)
