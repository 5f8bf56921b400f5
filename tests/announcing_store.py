"""A test's own store: with a Redis broker, it also announces the jobs it makes ready.

Contract tests enqueue through the store, as another process would; in a deployment with
Redis, that process's facade announces each job after commit. This store does the same
(through a broker of its own), so the tests meet the Redis broker as production does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.brokers.redis import RedisBroker
from conveyor.core.job import DEFAULT_TENANT, Job, NewJob
from conveyor.ports import Enqueued, ready_jobs
from conveyor.store.sql import SqlJobStore
from tests.backends import Deployment

POLL_INTERVAL = 1.0  # this broker only announces: it never waits


class AnnouncingStore(SqlJobStore):
    """The real store; what it enqueues or retries is announced on `broker` after commit."""

    broker: RedisBroker

    async def enqueue(self, job: NewJob, *, connection: Any = None) -> Enqueued:
        enqueued = await super().enqueue(job, connection=connection)
        if enqueued.created and connection is None:
            await self.broker.announce(ready_jobs([enqueued.job]))
        return enqueued

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        enqueued = await super().enqueue_many(jobs)
        await self.broker.announce(ready_jobs([item.job for item in enqueued if item.created]))
        return enqueued

    async def retry(self, job_id: str, *, tenant: str | None = DEFAULT_TENANT) -> Job:
        job = await super().retry(job_id, tenant=tenant)
        await self.broker.announce(ready_jobs([job]))
        return job

    async def close(self) -> None:
        await self.broker.close()
        await super().close()


async def open_test_store(deployment: Deployment) -> SqlJobStore:
    if deployment.redis_url is None:
        return await SqlJobStore.open(deployment.database_url)
    store = await AnnouncingStore.open(deployment.database_url)
    assert isinstance(store, AnnouncingStore)
    store.broker = RedisBroker(
        store,
        url=deployment.redis_url,
        prefix=deployment.redis_prefix or "conveyor:",
        poll_interval=POLL_INTERVAL,
    )
    return store
