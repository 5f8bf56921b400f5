"""Helpers of the Redis broker's tests.

A broker here polls only once a minute, so a wait that ends within DEADLINE was ended by
an id arriving in Redis.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from conveyor.brokers.redis import RedisBroker
from conveyor.core.job import Job, NewJob
from conveyor.ports import Broker, Claim, ready_jobs
from conveyor.store.sql import SqlJobStore

DEADLINE = 10.0
POLL_INTERVAL = 60.0
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def open_broker(
    store: SqlJobStore, url: str, prefix: str, *, grace_seconds: float = 2.0
) -> RedisBroker:
    return RedisBroker(
        store,
        url=url,
        prefix=prefix,
        poll_interval=POLL_INTERVAL,
        reconcile_grace_seconds=grace_seconds,
    )


async def mark_complete(redis: Redis, prefix: str) -> None:
    """As the reconciler leaves Redis after a refill: known to hold every ready id."""
    await redis.set(f"{prefix}epoch", "set-by-the-test")


async def submit(
    store: SqlJobStore, producer: RedisBroker, queue: str = "a", **options: Any
) -> Job:
    """Enqueue and announce, as the facade does."""
    job = (await store.enqueue(NewJob(task="tests.noop", queue=queue, **options))).job
    await producer.announce(ready_jobs([job]))
    return job


async def claim(broker: Broker, queues: tuple[str, ...] = (), limit: int = 10) -> list[Claim]:
    return await broker.claim(worker_id="worker-1", queues=queues, limit=limit, lease_seconds=30)


def ids(claims: list[Claim]) -> list[str]:
    return [item.job.id for item in claims]


async def held_ids(redis: Redis, prefix: str, queue: str) -> list[str]:
    members = await redis.zrange(f"{prefix}queue:{queue}", 0, -1)
    return [str(member) for member in members]
