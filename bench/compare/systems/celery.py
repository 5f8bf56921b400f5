"""Celery on Redis.

Workers: one `celery worker` (prefork pool, Celery's default) whose `--concurrency` is the
number of job-executing processes: its children run the jobs, while the parent only
consumes from Redis and hands messages over (peak memory counts the parent and children).
Otherwise Celery's production defaults: prefetch multiplier 4, acks on receipt (acks_late
off: Celery's default; its docs advise it only for idempotent tasks), no result backend,
logging at WARNING. Celery has no bulk enqueue (`group` publishes one message per task).
"""

from __future__ import annotations

import sys
from typing import Any

from bench.compare.system import QUEUE, Settings, WorkerProcesses
from bench.compare.systems import celery_tasks
from bench.compare.systems.celery_tasks import REDIS_URL_VARIABLE


class CelerySystem:
    name = "celery"
    backend = "redis"
    bulk = False

    def __init__(self, settings: Settings) -> None:
        self._redis_url = settings.redis_url
        self._app: Any = celery_tasks.app
        self._app.conf.broker_url = settings.redis_url
        self._noop: Any = celery_tasks.noop

    async def reset(self) -> None:
        with self._app.connection_for_write() as connection:
            connection.default_channel.client.flushdb()

    async def enqueue_one(self) -> None:
        # Synchronous, as Celery's producer API is: one call, one message published.
        self._noop.delay()

    async def enqueue_many(self, count: int) -> None:
        raise NotImplementedError("Celery has no bulk enqueue")

    def workers(self, processes: int) -> WorkerProcesses:
        command = [
            sys.executable,
            "-m",
            "celery",
            "--app",
            "bench.compare.systems.celery_tasks:app",
            "worker",
            "--queues",
            QUEUE,
            "--concurrency",
            str(processes),
            "--loglevel",
            "WARNING",
        ]
        return WorkerProcesses(
            commands=[command],
            environment={REDIS_URL_VARIABLE: self._redis_url},
            description=f"`celery worker --pool prefork --concurrency {processes}`",
        )

    async def close(self) -> None:
        self._app.close()


def open_system(settings: Settings, variant: str) -> CelerySystem:
    return CelerySystem(settings)
