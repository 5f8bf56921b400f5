"""streaQ on Redis.

Workers: `streaq run bench.compare.systems.streaq_tasks:worker --workers N` (streaQ's own
option for N worker processes, each running tasks), concurrency 100 (its concurrency knob,
as Conveyor's) and the defaults otherwise: prefetch as many as the concurrency, idle
timeout 60 s, results kept 5 min; the task is `silent` (no log line per task).
Bulk: `Worker.enqueue_many`, one Redis pipeline for the whole batch.
"""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from typing import Any

from bench.compare.system import Settings, WorkerProcesses
from bench.compare.systems.streaq_tasks import CONCURRENCY, REDIS_URL_VARIABLE, build_worker


class StreaqSystem:
    name = "streaq"
    backend = "redis"
    bulk = True

    def __init__(self, settings: Settings) -> None:
        self._redis_url = settings.redis_url
        self._worker: Any = build_worker(settings.redis_url)
        self._noop: Any = self._worker.registry["noop"]
        self._exit_stack = AsyncExitStack()
        self._entered = False

    async def reset(self) -> None:
        if not self._entered:  # the client side of a streaQ worker: connects, loads its Lua
            await self._exit_stack.enter_async_context(self._worker)
            self._entered = True
        await self._worker.redis.flushdb()

    async def enqueue_one(self) -> None:
        await self._noop.enqueue()

    async def enqueue_many(self, count: int) -> None:
        await self._worker.enqueue_many([self._noop.enqueue() for _ in range(count)])

    def workers(self, processes: int) -> WorkerProcesses:
        command = [
            sys.executable,
            "-m",
            "streaq",
            "run",
            "bench.compare.systems.streaq_tasks:worker",
            "--workers",
            str(processes),
        ]
        return WorkerProcesses(
            commands=[command],
            environment={REDIS_URL_VARIABLE: self._redis_url},
            description=f"`streaq run --workers {processes}` (concurrency {CONCURRENCY})",
        )

    async def close(self) -> None:
        await self._exit_stack.aclose()


def open_system(settings: Settings, variant: str) -> StreaqSystem:
    return StreaqSystem(settings)
