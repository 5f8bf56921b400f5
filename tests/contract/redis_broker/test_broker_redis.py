"""The Redis broker: ids in sorted sets, claims decided by the store, and no downtime when
Redis is gone (DESIGN §3 "Broker").

Fixtures in conftest.py, helpers in harness.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from conveyor.brokers.redis import RedisBroker
from conveyor.core.job import JobState, NewJob
from conveyor.ports import Broker, Claim, ready_jobs
from conveyor.store.ids import new_job_id
from conveyor.store.sql import SqlJobStore
from tests.backends import Backend, BackendUnavailable, start_redis
from tests.contract.redis_broker.harness import (
    DEADLINE,
    POLL_INTERVAL,
    UNREACHABLE_REDIS,
    claim,
    held_ids,
    ids,
    open_broker,
    submit,
)
from tests.waiting import eventually

pytestmark = pytest.mark.postgres


# Publishing and claiming -----------------------------------------------------------------


async def test_an_announced_job_is_claimed_through_redis(
    broker: Broker, store: SqlJobStore, producer: RedisBroker, redis: Redis, redis_prefix: str
) -> None:
    job = await submit(store, producer)
    assert await held_ids(redis, redis_prefix, "a") == [job.id]
    assert await redis.smembers(f"{redis_prefix}queues") == {"a"}

    claims = await claim(broker, ("a",))

    assert ids(claims) == [job.id]
    assert claims[0].job.state is JobState.RUNNING
    assert await held_ids(redis, redis_prefix, "a") == []
    assert await claim(broker, ("a",)) == []


async def test_higher_priority_first_then_fifo_across_queues(
    broker: Broker, store: SqlJobStore, producer: RedisBroker
) -> None:
    low_a = await submit(store, producer, "a")
    high_b = await submit(store, producer, "b", priority=5)
    high_a = await submit(store, producer, "a", priority=5)
    low_b = await submit(store, producer, "b")

    claims = await claim(broker, ("a", "b"))

    assert ids(claims) == [high_b.id, high_a.id, low_a.id, low_b.id]


async def test_a_claim_takes_no_more_than_its_limit(
    broker: Broker, store: SqlJobStore, producer: RedisBroker
) -> None:
    jobs = [await submit(store, producer) for _ in range(5)]

    first = await claim(broker, limit=2)
    rest = await claim(broker, limit=10)

    assert ids(first) == [job.id for job in jobs[:2]]
    assert ids(rest) == [job.id for job in jobs[2:]]


async def test_a_worker_naming_queues_gets_only_theirs_and_one_naming_none_gets_any(
    broker: Broker, store: SqlJobStore, producer: RedisBroker
) -> None:
    in_a = await submit(store, producer, "a")
    in_b = await submit(store, producer, "b")

    assert ids(await claim(broker, ("b",))) == [in_b.id]
    assert await claim(broker, ("b", "c")) == []
    assert ids(await claim(broker, ())) == [in_a.id]


async def test_ids_of_jobs_gone_finished_or_claimed_are_dropped(
    broker: Broker, store: SqlJobStore, producer: RedisBroker, redis: Redis, redis_prefix: str
) -> None:
    gone = dataclasses.replace(await submit(store, producer), id=new_job_id())
    await producer.announce(ready_jobs([gone]))  # an id whose job does not exist (any more)
    cancelled = await submit(store, producer)
    await store.cancel(cancelled.id)
    taken = await submit(store, producer)
    await store.claim(worker_id="other", queues=(), limit=2, lease_seconds=30)
    fresh = await submit(store, producer)

    claims = await claim(broker)

    assert ids(claims) == [fresh.id]
    assert taken.id not in ids(claims)
    assert await held_ids(redis, redis_prefix, "a") == []


async def test_a_paused_queue_keeps_its_ids_until_it_is_resumed(
    broker: Broker, store: SqlJobStore, producer: RedisBroker, redis: Redis, redis_prefix: str
) -> None:
    await store.pause_queue("paused")
    waiting = await submit(store, producer, "paused")
    other = await submit(store, producer, "other")

    assert ids(await claim(broker)) == [other.id]
    assert await claim(broker, ("paused",)) == []
    assert await held_ids(redis, redis_prefix, "paused") == [waiting.id]

    await store.resume_queue("paused")

    async def claimed() -> list[Claim]:
        return await claim(broker, ("paused",))

    resumed = await eventually(claimed, timeout=DEADLINE, message="the resumed queue's job")
    assert ids(resumed) == [waiting.id]


async def test_announcing_a_job_twice_gives_one_claim(
    broker: Broker, store: SqlJobStore, producer: RedisBroker, redis: Redis, redis_prefix: str
) -> None:
    job = await submit(store, producer)
    await producer.announce(ready_jobs([job]))

    assert await held_ids(redis, redis_prefix, "a") == [job.id]
    assert ids(await claim(broker)) == [job.id]
    assert await claim(broker) == []


async def test_a_scheduled_job_is_not_announced(
    store: SqlJobStore, producer: RedisBroker, redis: Redis, redis_prefix: str
) -> None:
    later = await submit(store, producer, delay=3600)

    assert later.state is JobState.SCHEDULED
    assert await redis.exists(f"{redis_prefix}queue:a", f"{redis_prefix}queues") == 0


# Waiting ------------------------------------------------------------------------------


async def start_waiting(broker: Broker, queues: tuple[str, ...]) -> asyncio.Task[None]:
    waiter = asyncio.create_task(broker.wait_for_work(queues, POLL_INTERVAL))
    await asyncio.sleep(0)  # one turn: the wait has started
    assert not waiter.done()
    return waiter


async def test_a_waiter_wakes_when_a_job_is_announced_and_the_next_claim_takes_it(
    broker: Broker, store: SqlJobStore, producer: RedisBroker, redis: Redis, redis_prefix: str
) -> None:
    await submit(store, producer, "b")  # known, so the waiter on every queue blocks on it too
    await claim(broker)
    waiter = await start_waiting(broker, ())

    job = await submit(store, producer, "b")
    await asyncio.wait_for(waiter, DEADLINE)

    assert await held_ids(redis, redis_prefix, "b") == []  # popped by the wait, and kept
    assert ids(await claim(broker, ("b",))) == [job.id]


async def test_a_claim_takes_the_id_a_wait_popped_and_tops_up_to_its_limit_from_redis(
    broker: Broker, store: SqlJobStore, producer: RedisBroker, redis: Redis, redis_prefix: str
) -> None:
    waiter = await start_waiting(broker, ("a",))
    popped = await submit(store, producer)
    await asyncio.wait_for(waiter, DEADLINE)
    queued = [await submit(store, producer) for _ in range(3)]

    claims = await claim(broker, ("a",), limit=3)

    assert ids(claims) == [popped.id, queued[0].id, queued[1].id]
    assert all(item.job.state is JobState.RUNNING for item in claims)
    assert await held_ids(redis, redis_prefix, "a") == [queued[2].id]


async def test_an_id_popped_by_a_wait_is_put_back_when_the_broker_closes_unclaimed(
    store: SqlJobStore, producer: RedisBroker, redis: Redis, redis_url: str, redis_prefix: str
) -> None:
    broker = open_broker(store, redis_url, redis_prefix)
    waiter = await start_waiting(broker, ("a",))
    job = await submit(store, producer)
    await asyncio.wait_for(waiter, DEADLINE)
    assert await held_ids(redis, redis_prefix, "a") == []

    await broker.close()

    assert await held_ids(redis, redis_prefix, "a") == [job.id]


async def test_an_id_popped_after_its_waiter_was_cancelled_is_claimed_next(
    broker: Broker, store: SqlJobStore, producer: RedisBroker, redis: Redis
) -> None:
    waiter = await start_waiting(broker, ("a",))

    async def blocked_in_redis() -> bool:
        return any(client.get("cmd") == "bzpopmin" for client in await redis.client_list())

    await eventually(blocked_in_redis, timeout=DEADLINE, message="the blocking pop")
    waiter.cancel()  # a worker told to stop cancels its wait; the pop itself runs on
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    job = await submit(store, producer)

    async def claimed() -> list[Claim]:
        return await claim(broker, ("a",))

    assert ids(await eventually(claimed, timeout=DEADLINE, message="the job")) == [job.id]


async def test_a_wait_without_work_ends_after_its_timeout(broker: Broker) -> None:
    await asyncio.wait_for(broker.wait_for_work(["idle"], timeout=0.05), DEADLINE)
    await asyncio.wait_for(broker.wait_for_work([], timeout=0.05), DEADLINE)


async def test_ping_answers_and_close_is_idempotent(broker: Broker) -> None:
    await broker.ping()
    await broker.close()
    await broker.close()


# Redis unreachable ----------------------------------------------------------------------


async def test_without_redis_jobs_are_accepted_and_claimed_from_the_store(
    store: SqlJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="conveyor.brokers.redis")
    broker = open_broker(store, UNREACHABLE_REDIS, "conveyor-test:")
    try:
        await broker.start()
        job = (await store.enqueue(NewJob(task="tests.noop", queue="a"))).job
        await broker.announce(ready_jobs([job]))  # does not raise: the job is committed already

        assert ids(await claim(broker, ("a",))) == [job.id]
        await asyncio.wait_for(broker.wait_for_work(["a"], timeout=0.2), DEADLINE)
        with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:1"):
            await broker.ping()
    finally:
        await broker.close()
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1  # one outage, logged once
    assert "using the job store" in warnings[0].getMessage()


# The eviction policy --------------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[Backend]:
    """A Redis server of this test alone, so that its configuration may be changed."""
    try:
        server = start_redis()
    except BackendUnavailable as error:
        pytest.skip(f"needs a Redis server of its own to reconfigure: {error}")
    yield server
    server.stop()


@pytest.mark.parametrize(("policy", "warned"), [("allkeys-lru", True), ("noeviction", False)])
async def test_a_policy_that_evicts_keys_is_warned_about_at_start(
    store: SqlJobStore,
    own_redis: Backend,
    caplog: pytest.LogCaptureFixture,
    policy: str,
    warned: bool,
) -> None:
    url = own_redis.require_url()
    client = Redis.from_url(url)
    await client.config_set("maxmemory-policy", policy)
    await client.aclose()
    broker = open_broker(store, url, "conveyor-test:")

    await broker.start()
    await broker.close()

    warnings = [record.getMessage() for record in caplog.records if "maxmemory" in record.msg]
    assert bool(warnings) is warned
    if warned:
        assert "allkeys-lru" in warnings[0]
        assert "noeviction" in warnings[0]
