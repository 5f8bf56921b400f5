"""arq's no-op task and worker settings for the comparison (`arq ...arq_tasks.WorkerSettings`).

The workers find Redis in REDIS_URL_VARIABLE, which the adapter sets for them.
"""

from __future__ import annotations

import os
from typing import Any

from arq.connections import RedisSettings  # type: ignore[import-not-found]

from bench.compare.completions import record
from bench.compare.system import QUEUE

REDIS_URL_VARIABLE = "CONVEYOR_BENCH_REDIS_URL"
MAX_JOBS = 100  # concurrent jobs per process, as Conveyor's --concurrency


async def noop(ctx: dict[str, Any]) -> None:
    record()


class WorkerSettings:
    """Read by `arq` at start; defaults for everything not set here."""

    functions = (noop,)
    queue_name = QUEUE
    redis_settings = RedisSettings.from_dsn(
        os.environ.get(REDIS_URL_VARIABLE, "redis://127.0.0.1:6379/0")
    )
    max_jobs = MAX_JOBS


LOGGING = {
    # `--custom-log-dict`: arq's default configuration logs at INFO, a line per job; every
    # system here logs warnings only, so that none pays for a log line per job.
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"arq.standard": {"level": "WARNING", "class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["arq.standard"], "level": "WARNING"}},
}
