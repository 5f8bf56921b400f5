"""The reconciler: Redis is made to hold every job the store has `queued`, whatever it lost
(docs/decisions.md, "Redis broker"); and the monitor publishes what it makes ready.

Fixtures in conftest.py (`broker` starts on a Redis marked complete), helpers in harness.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from conveyor.brokers.redis import RedisBroker
from conveyor.core.job import Job, NewJob
from conveyor.ports import Broker, Reconciliation
from conveyor.runtime.monitor import Monitor
from conveyor.store.sql import SqlJobStore
from tests.contract.redis_broker.harness import (
    DEADLINE,
    POLL_INTERVAL,
    claim,
    held_ids,
    ids,
    open_broker,
    submit,
)
from tests.waiting import eventually

pytestmark = pytest.mark.postgres

NO_GRACE = 0.0
LONG_GRACE = 3600.0


@pytest.fixture
async def reconciler(
    store: SqlJobStore, redis_url: str, redis_prefix: str
) -> AsyncIterator[RedisBroker]:
    """The monitor leader's broker, without a grace so that tests need not wait it out."""
    leader = open_broker(store, redis_url, redis_prefix, grace_seconds=NO_GRACE)
    yield leader
    await leader.close()


async def unannounced(store: SqlJobStore, count: int = 1, **options: object) -> list[Job]:
    """Jobs committed by a process that died before publishing them."""
    new_jobs = [NewJob(task="tests.noop", queue="a", **options) for _ in range(count)]  # type: ignore[arg-type]
    return [item.job for item in await store.enqueue_many(new_jobs)]


async def steps(broker: RedisBroker, limit: int, count: int) -> list[Reconciliation]:
    return [await broker.reconcile(limit=limit) for _ in range(count)]


async def is_complete(redis: Redis, prefix: str) -> bool:
    return bool(await redis.exists(f"{prefix}epoch"))


# Complete: ids lost one by one ---------------------------------------------------------


async def test_a_job_redis_never_heard_of_is_claimed_only_once_republished(
    broker: Broker, reconciler: RedisBroker, store: SqlJobStore
) -> None:
    [job] = await unannounced(store)
    assert await claim(broker) == []  # Redis is complete: no claim from the store

    assert await reconciler.reconcile(limit=100) == Reconciliation(republished=1, round_done=False)

    assert ids(await claim(broker)) == [job.id]


async def test_jobs_ready_for_less_than_the_grace_are_left_to_their_publisher(
    broker: Broker, store: SqlJobStore, redis: Redis, redis_url: str, redis_prefix: str
) -> None:
    patient = open_broker(store, redis_url, redis_prefix, grace_seconds=LONG_GRACE)
    await unannounced(store)

    assert await patient.reconcile(limit=100) == Reconciliation(republished=0, round_done=False)
    assert await held_ids(redis, redis_prefix, "a") == []
    await patient.close()


async def test_only_the_ids_redis_lost_are_published_again_and_it_is_logged(
    broker: Broker,
    reconciler: RedisBroker,
    store: SqlJobStore,
    producer: RedisBroker,
    redis: Redis,
    redis_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kept, lost, claimed = [await submit(store, producer) for _ in range(3)]
    [taken] = await store.claim_ids(worker_id="w", job_ids=[claimed.id], lease_seconds=30)
    await redis.zrem(f"{redis_prefix}queue:a", lost.id, claimed.id)  # popped by the dead

    with caplog.at_level(logging.WARNING, logger="conveyor.brokers.redis"):
        assert await reconciler.reconcile(limit=100) == Reconciliation(
            republished=1, round_done=False
        )

    assert sorted(await held_ids(redis, redis_prefix, "a")) == sorted([kept.id, lost.id])
    assert taken.job.id == claimed.id  # running: not ready, not republished
    assert ["lacked 1 ready job ids" in record.getMessage() for record in caplog.records] == [True]


async def test_a_backlog_is_walked_in_bounded_steps_across_priorities_then_again(
    broker: Broker, reconciler: RedisBroker, store: SqlJobStore, redis: Redis, redis_prefix: str
) -> None:
    jobs = [
        *await unannounced(store, 12, priority=5),
        *await unannounced(store, 6, priority=0),
        *await unannounced(store, 7, priority=-3),
    ]

    walked = await steps(reconciler, limit=10, count=6)

    # Every other step reads the head of the claim order; the others walk the backlog.
    assert [(step.republished, step.round_done) for step in walked] == [
        (10, False),  # the head: its first page
        (0, False),  # the walk's first page, republished by the head step already
        (0, False),
        (10, False),
        (0, False),
        (5, True),
    ]
    assert not any(step.catching_up for step in walked)
    assert sorted(await held_ids(redis, redis_prefix, "a")) == sorted(job.id for job in jobs)
    again = await steps(reconciler, limit=10, count=6)  # a new round, from the start
    assert [(step.republished, step.round_done) for step in again[1::2]] == [
        (0, False),
        (0, False),
        (0, True),
    ]
    assert ids(await claim(broker, limit=25)) == [job.id for job in jobs]  # claim order


async def test_an_id_lost_at_the_head_is_found_at_the_next_head_step_wherever_the_walk_is(
    broker: Broker, reconciler: RedisBroker, store: SqlJobStore, redis: Redis, redis_prefix: str
) -> None:
    jobs = await unannounced(store, 30)
    await steps(reconciler, limit=10, count=4)  # all published; the walk is past the head
    await redis.zrem(f"{redis_prefix}queue:a", jobs[0].id)  # popped by a worker that died

    [head_step] = await steps(reconciler, limit=10, count=1)

    assert head_step == Reconciliation(republished=1, round_done=False)
    assert ids(await claim(broker))[:1] == [jobs[0].id]


# Incomplete: Redis restarted empty, or missed ids while away ----------------------------


async def test_an_empty_redis_is_refilled_without_grace_then_marked_complete(
    store: SqlJobStore, redis: Redis, redis_url: str, redis_prefix: str
) -> None:
    leader = open_broker(store, redis_url, redis_prefix, grace_seconds=LONG_GRACE)
    jobs = await unannounced(store, 15)

    walked = await steps(leader, limit=10, count=2)

    assert walked == [
        Reconciliation(republished=10, round_done=False, catching_up=True),
        Reconciliation(republished=5, round_done=True, catching_up=False),
    ]
    assert await is_complete(redis, redis_prefix)
    assert sorted(await held_ids(redis, redis_prefix, "a")) == sorted(job.id for job in jobs)
    await leader.close()


async def test_while_redis_is_incomplete_claims_are_topped_up_from_the_store(
    store: SqlJobStore, redis_url: str, redis_prefix: str
) -> None:
    worker = open_broker(store, redis_url, redis_prefix)
    [job] = await unannounced(store)

    assert ids(await claim(worker)) == [job.id]
    await worker.close()


async def test_a_refill_that_overlapped_a_loss_does_not_mark_redis_complete(
    reconciler: RedisBroker, store: SqlJobStore, redis: Redis, redis_prefix: str
) -> None:
    await unannounced(store, 15)
    first = await reconciler.reconcile(limit=10)
    assert first.catching_up
    # Another process got through to Redis after failing to: it may have missed ids that
    # lie behind the refill's position, so it marks Redis incomplete again.
    await redis.delete(f"{redis_prefix}epoch", f"{redis_prefix}sweep")

    end_of_first = await reconciler.reconcile(limit=10)

    assert (end_of_first.round_done, end_of_first.catching_up) == (True, True)
    assert not await is_complete(redis, redis_prefix)
    second = await steps(reconciler, limit=10, count=2)
    assert [(step.round_done, step.catching_up) for step in second] == [
        (False, True),
        (True, False),
    ]
    assert await is_complete(redis, redis_prefix)


async def test_a_broker_that_lost_its_connection_marks_redis_incomplete_when_back(
    broker: Broker, store: SqlJobStore, redis: Redis, redis_prefix: str
) -> None:
    waiting = asyncio.create_task(broker.wait_for_work(["a"], timeout=POLL_INTERVAL))

    async def blocked_connection() -> int | None:
        for client in await redis.client_list():
            if client.get("name") == f"conveyor:{redis_prefix}" and client["cmd"] == "bzpopmin":
                return int(client["id"])
        return None

    # The connection dies under a blocking pop, whose reply (and any id it took) is lost.
    victim = await eventually(blocked_connection, timeout=DEADLINE, message="the blocking pop")
    await redis.client_kill_filter(_id=str(victim))

    async def marked_incomplete() -> bool:
        await claim(broker)  # to the store during the backoff, then to Redis again
        return not await is_complete(redis, redis_prefix)

    await eventually(marked_incomplete, timeout=DEADLINE, message="Redis marked incomplete")
    [job] = await unannounced(store)
    assert ids(await claim(broker)) == [job.id]  # topped up from the store meanwhile
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting


# The monitor ------------------------------------------------------------------------------


async def test_the_monitor_publishes_what_it_promotes_and_rescues(
    broker: Broker, store: SqlJobStore, redis: Redis, redis_prefix: str
) -> None:
    monitor = Monitor(
        store,
        broker=broker,
        holder_id="monitor-1",
        interval_seconds=0.1,
        lease_seconds=2.0,
        retention_seconds=3600.0,
    )
    [delayed] = await unannounced(store, delay=0.05)
    [orphan] = await unannounced(store)
    [lost] = await store.claim_ids(worker_id="dead", job_ids=[orphan.id], lease_seconds=-1)

    async def promoted() -> bool:
        await monitor.run_once()
        return delayed.id in await held_ids(redis, redis_prefix, "a")

    await eventually(promoted, timeout=DEADLINE, message="the delayed job in Redis")
    assert lost.job.id in await held_ids(redis, redis_prefix, "a")
    assert sorted(ids(await claim(broker))) == sorted([delayed.id, orphan.id])
