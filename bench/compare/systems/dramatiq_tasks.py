"""Dramatiq's broker and no-op actor for the comparison (the workers' `...dramatiq_tasks`).

The workers find Redis in REDIS_URL_VARIABLE, which the adapter sets for them.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq  # type: ignore[import-not-found]
from dramatiq.brokers.redis import RedisBroker  # type: ignore[import-not-found]

from bench.compare.completions import record
from bench.compare.system import QUEUE

REDIS_URL_VARIABLE = "CONVEYOR_BENCH_REDIS_URL"


def declare(redis_url: str) -> tuple[Any, Any]:
    """A Redis broker with Dramatiq's default middleware (no Results: nobody reads them),
    and the no-op actor on it."""
    broker = RedisBroker(url=redis_url)

    @dramatiq.actor(broker=broker, queue_name=QUEUE, actor_name="noop")  # type: ignore[untyped-decorator]
    def noop() -> None:
        record()

    return broker, noop


broker, noop = declare(os.environ.get(REDIS_URL_VARIABLE, "redis://127.0.0.1:6379/0"))
dramatiq.set_broker(broker)  # the one the workers (`dramatiq ...dramatiq_tasks`) consume from
