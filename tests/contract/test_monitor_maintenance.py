"""The monitor: one leader promotes due jobs, rescues expired leases, prunes old jobs and
marks silent workers dead; a second monitor waits for the leadership."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from conveyor.brokers.database import DatabaseBroker
from conveyor.core.errors import JobNotFound
from conveyor.core.job import JobState, NewJob
from conveyor.core.outcome import Completed
from conveyor.ports import Maintenance, ReadyJob, Settlement, WorkerInfo
from conveyor.runtime.monitor import Monitor
from conveyor.store.sql import SqlJobStore
from tests.contract.worker_harness import WAIT
from tests.waiting import eventually

LEASE_EXPIRED = "LeaseExpired"


def monitor_for(
    store: SqlJobStore,
    holder: str = "monitor-1",
    *,
    batch_size: int = 1000,
    retention_seconds: float = 3600.0,
    dead_worker_seconds: float | None = None,
    interval_seconds: float = 0.1,
) -> Monitor:
    return Monitor(
        store,
        broker=DatabaseBroker(store, poll_interval=1.0),
        holder_id=holder,
        interval_seconds=interval_seconds,
        lease_seconds=2.0,
        retention_seconds=retention_seconds,
        batch_size=batch_size,
        dead_worker_seconds=dead_worker_seconds,
    )


@pytest_asyncio.fixture
async def other_store(database_url: str) -> AsyncIterator[SqlJobStore]:
    """A second store with its own connections, as another process would have."""
    opened = await SqlJobStore.open(database_url)
    yield opened
    await opened.close()


async def expired_claims(store: SqlJobStore, count: int, *, max_attempts: int) -> list[str]:
    await store.enqueue_many([NewJob(task="t", max_attempts=max_attempts) for _ in range(count)])
    claims = await store.claim(worker_id="gone", queues=(), limit=count, lease_seconds=-1)
    return [claim.job.id for claim in claims]


async def test_a_due_scheduled_job_is_promoted_to_the_queue(store: SqlJobStore) -> None:
    monitor = monitor_for(store)
    job = (await store.enqueue(NewJob(task="t", delay=0.2))).job
    assert job.state is JobState.SCHEDULED

    async def promoted() -> Maintenance | None:
        result = await monitor.run_once()
        return result if result is not None and result.promoted else None

    assert (await eventually(promoted, timeout=WAIT, message="promotion")).promoted == 1
    assert (await store.get(job.id)).state is JobState.QUEUED


async def test_an_expired_lease_puts_the_job_back_with_the_attempt_counted(
    store: SqlJobStore,
) -> None:
    [job_id] = await expired_claims(store, 1, max_attempts=3)

    result = await monitor_for(store).run_once()

    job = await store.get(job_id)
    assert result == Maintenance(rescued=1, ready=(ReadyJob(job_id, job.queue, job.priority),))
    assert (job.state, job.attempt) == (JobState.QUEUED, 1)
    assert [error.type for error in job.errors] == [LEASE_EXPIRED]


async def test_an_expired_lease_on_the_last_attempt_dead_letters_the_job(
    store: SqlJobStore,
) -> None:
    [job_id] = await expired_claims(store, 1, max_attempts=1)

    result = await monitor_for(store).run_once()

    assert result == Maintenance(dead_lettered=1)
    assert (await store.get(job_id)).state is JobState.FAILED


async def test_a_backlog_larger_than_a_batch_is_worked_off_in_one_pass(
    store: SqlJobStore,
) -> None:
    job_ids = await expired_claims(store, 5, max_attempts=3)

    result = await monitor_for(store, batch_size=2).run_once()

    assert result is not None
    assert (result.rescued, {job.id for job in result.ready}) == (5, set(job_ids))
    assert {(await store.get(job_id)).state for job_id in job_ids} == {JobState.QUEUED}


async def test_only_one_of_two_monitors_leads_until_the_leader_resigns(
    store: SqlJobStore, other_store: SqlJobStore
) -> None:
    # Leadership lasts three intervals unrenewed: long enough for a slow machine's steps.
    first = monitor_for(store, "monitor-1", interval_seconds=2.0)
    second = monitor_for(other_store, "monitor-2", interval_seconds=2.0)

    assert await first.run_once() == Maintenance()
    assert await second.run_once() is None
    assert await first.run_once() == Maintenance()  # the leader keeps leading

    running = asyncio.create_task(first.run())
    first.request_stop()
    await asyncio.wait_for(running, timeout=WAIT)  # run() resigns when it stops

    assert await second.run_once() == Maintenance()
    assert await first.run_once() is None


async def test_a_running_monitor_promotes_and_rescues_in_the_background(
    store: SqlJobStore,
) -> None:
    monitor = monitor_for(store)
    [expired] = await expired_claims(store, 1, max_attempts=3)
    scheduled = (await store.enqueue(NewJob(task="t", delay=0.2))).job
    running = asyncio.create_task(monitor.run())
    try:

        async def both_queued() -> bool:
            states = {(await store.get(job_id)).state for job_id in (expired, scheduled.id)}
            return states == {JobState.QUEUED}

        await eventually(both_queued, timeout=WAIT, message="promotion and rescue")
    finally:
        monitor.request_stop()
        await asyncio.wait_for(running, timeout=WAIT)


async def test_old_finished_jobs_are_pruned_and_silent_workers_marked_dead(
    store: SqlJobStore,
) -> None:
    await store.enqueue(NewJob(task="t"))
    [claim] = await store.claim(worker_id="w", queues=(), limit=1, lease_seconds=60)
    await store.settle([Settlement(claim.job.id, claim.token, Completed(1))])
    await store.register_worker(WorkerInfo(id="silent", host="h", pid=1, queues=(), concurrency=1))
    monitor = monitor_for(store, retention_seconds=0.0, dead_worker_seconds=0.05)
    totals = Maintenance()

    async def cleaned() -> bool:
        nonlocal totals
        result = await monitor.run_once()
        assert result is not None
        totals = Maintenance(
            pruned=totals.pruned + result.pruned,
            dead_workers=totals.dead_workers + result.dead_workers,
        )
        return totals.pruned == 1 and totals.dead_workers == 1

    await eventually(cleaned, timeout=WAIT, message="pruning and dead workers")
    with pytest.raises(JobNotFound):
        await store.get(claim.job.id)
    assert await store.list_workers() == []
    assert [(info.id, info.alive) for info in await store.list_workers(include_dead=True)] == [
        ("silent", False)
    ]
