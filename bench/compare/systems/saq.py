"""SAQ on Redis.

Workers: `saq bench.compare.systems.saq_tasks.settings --workers N` (SAQ's own option for
N worker processes, each running jobs), concurrency 100 (its concurrency knob for async
jobs, as Conveyor's) and the defaults otherwise: blocking dequeue, finished jobs kept 600 s,
logging at WARNING (the CLI's default). SAQ has no bulk enqueue: `Queue.map` enqueues one
by one and waits for the results.
"""

from __future__ import annotations

import sys
from typing import Any

from saq import Queue  # type: ignore[import-not-found]

from bench.compare.system import QUEUE, Settings, WorkerProcesses
from bench.compare.systems.saq_tasks import CONCURRENCY, REDIS_URL_VARIABLE


class SaqSystem:
    name = "saq"
    backend = "redis"
    bulk = False

    def __init__(self, settings: Settings) -> None:
        self._redis_url = settings.redis_url
        self._queue: Any = Queue.from_url(settings.redis_url, name=QUEUE)
        self._connected = False

    async def reset(self) -> None:
        if not self._connected:
            await self._queue.connect()
            self._connected = True
        await self._queue.redis.flushdb()

    async def enqueue_one(self) -> None:
        await self._queue.enqueue("noop")

    async def enqueue_many(self, count: int) -> None:
        raise NotImplementedError("SAQ has no bulk enqueue")

    def workers(self, processes: int) -> WorkerProcesses:
        command = [
            sys.executable,
            "-m",
            "saq",
            "bench.compare.systems.saq_tasks.settings",
            "--workers",
            str(processes),
        ]
        return WorkerProcesses(
            commands=[command],
            environment={REDIS_URL_VARIABLE: self._redis_url},
            description=f"`saq settings --workers {processes}` (concurrency {CONCURRENCY})",
        )

    async def close(self) -> None:
        await self._queue.disconnect()


def open_system(settings: Settings, variant: str) -> SaqSystem:
    return SaqSystem(settings)
