"""Taskiq's broker and no-op task for the comparison (`taskiq worker ...taskiq_tasks:broker`).

The broker is taskiq-redis's RedisStreamBroker, the one its README recommends when
durability matters (the list and pub/sub brokers lose a job whose worker dies); no result
backend. The workers find Redis in REDIS_URL_VARIABLE, which the adapter sets for them.
"""

from __future__ import annotations

import os
from typing import Any

from taskiq_redis import RedisStreamBroker  # type: ignore[import-not-found]

from bench.compare.completions import record
from bench.compare.system import QUEUE

REDIS_URL_VARIABLE = "CONVEYOR_BENCH_REDIS_URL"
TASK_NAME = "bench.noop"
CONSUMER_GROUP = "taskiq"  # RedisStreamBroker's default, which the adapter creates


def build_broker(redis_url: str) -> Any:
    broker = RedisStreamBroker(url=redis_url, queue_name=QUEUE, consumer_group_name=CONSUMER_GROUP)

    @broker.task(task_name=TASK_NAME)  # type: ignore[untyped-decorator]
    async def noop() -> None:
        record()

    return broker


broker = build_broker(os.environ.get(REDIS_URL_VARIABLE, "redis://127.0.0.1:6379/0"))
