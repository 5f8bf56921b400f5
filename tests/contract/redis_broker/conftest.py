"""Fixtures of the Redis broker's tests: each test has its own key prefix on the shared
Redis and its own PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from conveyor.brokers.redis import RedisBroker
from conveyor.ports import Broker
from conveyor.store.sql import SqlJobStore
from tests.contract.redis_broker.harness import mark_complete, open_broker


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[SqlJobStore]:
    opened = await SqlJobStore.open(postgres_url)
    yield opened
    await opened.close()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client, to look at what the broker keeps in Redis."""
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def broker(
    store: SqlJobStore, redis: Redis, redis_url: str, redis_prefix: str
) -> AsyncIterator[Broker]:
    """A started broker, seen through the `Broker` protocol (which mypy checks it meets),
    on a Redis marked complete, as the reconciler leaves it: claims go through Redis alone."""
    await mark_complete(redis, redis_prefix)
    started = open_broker(store, redis_url, redis_prefix)
    await started.start()
    yield started
    await started.close()


@pytest.fixture
async def producer(
    store: SqlJobStore, redis_url: str, redis_prefix: str
) -> AsyncIterator[RedisBroker]:
    """Another process's broker, which only announces what it enqueued."""
    opened = open_broker(store, redis_url, redis_prefix)
    yield opened
    await opened.close()
