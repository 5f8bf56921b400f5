"""streaQ's worker and no-op task for the comparison (`streaq run ...streaq_tasks:worker`).

The workers find Redis in REDIS_URL_VARIABLE, which the adapter sets for them.
"""

from __future__ import annotations

import os
from typing import Any

from streaq import Worker  # type: ignore[import-not-found]

from bench.compare.completions import record
from bench.compare.system import QUEUE

REDIS_URL_VARIABLE = "CONVEYOR_BENCH_REDIS_URL"
CONCURRENCY = 100  # concurrent tasks per process, as Conveyor's --concurrency


def build_worker(redis_url: str) -> Any:
    worker = Worker(redis_url=redis_url, queue_name=QUEUE, concurrency=CONCURRENCY)

    # silent: no INFO line per task. The CLI always configures streaQ's logging at INFO;
    # this is streaQ's way to keep per-task logging off, as the other peers' WARNING level.
    @worker.task(name="noop", silent=True)  # type: ignore[untyped-decorator]
    async def noop() -> None:
        record()

    return worker


worker = build_worker(os.environ.get(REDIS_URL_VARIABLE, "redis://127.0.0.1:6379/0"))
