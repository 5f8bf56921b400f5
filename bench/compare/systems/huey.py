"""Huey on Redis.

Workers: one `huey_consumer` with `--worker-type process --workers N`, the form Huey's
README gives for several worker processes: N child processes run the jobs, one at a time
each, while the parent runs the scheduler and watches them (peak memory counts them all).
Otherwise Huey's defaults: RedisHuey's blocking pop of the queue (1 s timeout), periodic
tasks on, no results stored (`results=False`: nobody reads them), `--quiet` logging
(WARNING). Huey has no bulk enqueue (`Task.map` enqueues one task at a time).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.compare.system import Settings, WorkerProcesses
from bench.compare.systems.huey_tasks import REDIS_URL_VARIABLE, declare


class HueySystem:
    name = "huey"
    backend = "redis"
    bulk = False

    def __init__(self, settings: Settings) -> None:
        self._redis_url = settings.redis_url
        self._huey: Any
        self._noop: Any
        self._huey, self._noop = declare(settings.redis_url)

    async def reset(self) -> None:
        self._huey.storage.conn.flushdb()

    async def enqueue_one(self) -> None:
        # Synchronous, as Huey's API is: calling the task enqueues it.
        self._noop()

    async def enqueue_many(self, count: int) -> None:
        raise NotImplementedError("Huey has no bulk enqueue")

    def workers(self, processes: int) -> WorkerProcesses:
        command = [
            str(Path(sys.executable).with_name("huey_consumer")),  # the CLI Huey installs
            "bench.compare.systems.huey_tasks.huey",
            "--worker-type",
            "process",
            "--workers",
            str(processes),
            "--quiet",
        ]
        return WorkerProcesses(
            commands=[command],
            environment={REDIS_URL_VARIABLE: self._redis_url},
            description=f"`huey_consumer --worker-type process --workers {processes}`",
        )

    async def close(self) -> None:
        self._huey.storage.pool.disconnect()


def open_system(settings: Settings, variant: str) -> HueySystem:
    return HueySystem(settings)
