"""SAQ's no-op task and worker settings for the comparison (`saq ...saq_tasks.settings`).

The workers find Redis in REDIS_URL_VARIABLE, which the adapter sets for them.
"""

from __future__ import annotations

import os
from typing import Any

from saq import Queue  # type: ignore[import-not-found]

from bench.compare.completions import record
from bench.compare.system import QUEUE

REDIS_URL_VARIABLE = "CONVEYOR_BENCH_REDIS_URL"
CONCURRENCY = 100  # concurrent jobs per process, as Conveyor's --concurrency


async def noop(ctx: dict[str, Any]) -> None:
    record()


def settings() -> dict[str, Any]:
    """Called by `saq` in each worker process (after it forks): a queue of its own."""
    url = os.environ.get(REDIS_URL_VARIABLE, "redis://127.0.0.1:6379/0")
    return {
        "queue": Queue.from_url(url, name=QUEUE),
        "functions": [noop],
        "concurrency": CONCURRENCY,
    }
