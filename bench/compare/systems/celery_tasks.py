"""Celery's app and no-op task for the comparison (the workers' `-A ...celery_tasks:app`).

The workers find Redis in REDIS_URL_VARIABLE, which the adapter sets for them.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery  # type: ignore[import-not-found]

from bench.compare.completions import record
from bench.compare.system import QUEUE

REDIS_URL_VARIABLE = "CONVEYOR_BENCH_REDIS_URL"
NOOP = "bench.noop"


# Celery's defaults but for: the broker, the queue, and no results (no backend, and results
# ignored, as Celery's optimizing guide advises when nobody reads them). One app per process:
# Celery registers task names process-wide. The producer sets its broker before first use.
app: Any = Celery("bench", broker=os.environ.get(REDIS_URL_VARIABLE, "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    # Celery's coming default, set to silence its deprecation warning at start.
    broker_connection_retry_on_startup=True,
)


@app.task(name=NOOP)  # type: ignore[untyped-decorator]
def noop() -> None:
    record()
