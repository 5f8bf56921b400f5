"""Taskiq (taskiq-redis's RedisStreamBroker) on Redis.

Workers: `taskiq worker bench.compare.systems.taskiq_tasks:broker --workers N` (N child
processes run jobs; a parent process only supervises them), --max-async-tasks 100 (its
default, and Conveyor's concurrency), --log-level WARNING, and the defaults otherwise:
acknowledgement once the (absent) result is saved, no prefetch beyond the running tasks,
xreadgroup of up to 100 messages blocking 2 s. Taskiq has no bulk enqueue.
"""

from __future__ import annotations

import sys
from typing import Any

from redis.asyncio import Redis

from bench.compare.system import QUEUE, Settings, WorkerProcesses
from bench.compare.systems.taskiq_tasks import (
    CONSUMER_GROUP,
    REDIS_URL_VARIABLE,
    TASK_NAME,
    build_broker,
)

MAX_ASYNC_TASKS = 100


class TaskiqSystem:
    name = "taskiq"
    backend = "redis"
    bulk = False

    def __init__(self, settings: Settings) -> None:
        self._redis_url = settings.redis_url
        self._broker: Any = build_broker(settings.redis_url)
        self._noop: Any = self._broker.find_task(TASK_NAME)
        self._started = False

    async def reset(self) -> None:
        if not self._started:
            await self._broker.startup()
            self._started = True
        client: Any = Redis.from_url(self._redis_url)
        try:
            await client.flushdb()
            # A consumer group the workers declare at their start would begin at the end of
            # the stream ("$"), after the jobs queued before them: it must exist from the
            # first job on.
            await client.xgroup_create(QUEUE, CONSUMER_GROUP, id="0", mkstream=True)
        finally:
            await client.aclose()

    async def enqueue_one(self) -> None:
        await self._noop.kiq()

    async def enqueue_many(self, count: int) -> None:
        raise NotImplementedError("Taskiq has no bulk enqueue")

    def workers(self, processes: int) -> WorkerProcesses:
        command = [
            sys.executable,
            "-m",
            "taskiq",
            "worker",
            "bench.compare.systems.taskiq_tasks:broker",
            "--workers",
            str(processes),
            "--max-async-tasks",
            str(MAX_ASYNC_TASKS),
            "--log-level",
            "WARNING",
        ]
        return WorkerProcesses(
            commands=[command],
            environment={REDIS_URL_VARIABLE: self._redis_url},
            description=(
                f"`taskiq worker --workers {processes} --max-async-tasks {MAX_ASYNC_TASKS}` "
                "(+1 supervising process)"
            ),
        )

    async def close(self) -> None:
        if self._started:
            await self._broker.shutdown()


def open_system(settings: Settings, variant: str) -> TaskiqSystem:
    return TaskiqSystem(settings)
