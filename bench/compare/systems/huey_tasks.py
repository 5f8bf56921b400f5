"""Huey's instance and no-op task for the comparison (the workers' `...huey_tasks.huey`).

The workers find Redis in REDIS_URL_VARIABLE, which the adapter sets for them.
"""

from __future__ import annotations

import os
from typing import Any

from huey import RedisHuey  # type: ignore[import-not-found]

from bench.compare.completions import record
from bench.compare.system import QUEUE

REDIS_URL_VARIABLE = "CONVEYOR_BENCH_REDIS_URL"


def declare(redis_url: str) -> tuple[Any, Any]:
    """A RedisHuey with Huey's defaults (a blocking read of the queue) but for results,
    which nobody reads; and the no-op task on it."""
    instance = RedisHuey(QUEUE, url=redis_url, results=False)

    @instance.task()  # type: ignore[untyped-decorator]
    def noop() -> None:
        record()

    return instance, noop


huey, noop = declare(os.environ.get(REDIS_URL_VARIABLE, "redis://127.0.0.1:6379/0"))
