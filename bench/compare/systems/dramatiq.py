"""Dramatiq on Redis.

Workers: one `dramatiq` command whose `--processes` is the number of job-executing
processes (its main process only supervises them), each with Dramatiq's default 8 threads
(its actors are synchronous: threads are its concurrency) and the prefetch that follows
(2 per thread). Otherwise Dramatiq's defaults: its default middleware (retries, time and
age limits), no Results middleware, acks after the actor ran; idle consumers poll Redis
with a backoff of up to 1 s (`dramatiq_worker_timeout`). Logging: `--skip-logging`
(Dramatiq's CLI has no level above INFO), so only warnings and errors reach stderr.
Dramatiq has no bulk enqueue (`group` sends one message at a time).
"""

from __future__ import annotations

import sys
from typing import Any

from bench.compare.system import QUEUE, Settings, WorkerProcesses
from bench.compare.systems.dramatiq_tasks import REDIS_URL_VARIABLE, declare

THREADS = 8  # Dramatiq's default per process


class DramatiqSystem:
    name = "dramatiq"
    backend = "redis"
    bulk = False

    def __init__(self, settings: Settings) -> None:
        self._redis_url = settings.redis_url
        self._broker: Any
        self._noop: Any
        self._broker, self._noop = declare(settings.redis_url)

    async def reset(self) -> None:
        self._broker.client.flushdb()

    async def enqueue_one(self) -> None:
        # Synchronous, as Dramatiq's API is: one call, one message sent.
        self._noop.send()

    async def enqueue_many(self, count: int) -> None:
        raise NotImplementedError("Dramatiq has no bulk enqueue")

    def workers(self, processes: int) -> WorkerProcesses:
        command = [
            sys.executable,
            "-m",
            "dramatiq",
            "bench.compare.systems.dramatiq_tasks",
            "--processes",
            str(processes),
            "--threads",
            str(THREADS),
            "--queues",
            QUEUE,
            "--skip-logging",
        ]
        return WorkerProcesses(
            commands=[command],
            environment={REDIS_URL_VARIABLE: self._redis_url},
            description=f"`dramatiq --processes {processes} --threads {THREADS}`",
        )

    async def close(self) -> None:
        self._broker.close()


def open_system(settings: Settings, variant: str) -> DramatiqSystem:
    return DramatiqSystem(settings)
