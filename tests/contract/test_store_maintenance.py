"""The monitor's work: promoting due jobs, rescuing expired leases, pruning, and electing
one leader to do it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from conveyor.core.job import ErrorInfo, JobState, NewJob
from conveyor.core.outcome import Completed, Failed, Retrying
from conveyor.ports import Claim, ReadyJob, Settlement
from conveyor.store.sql import SqlJobStore
from tests.waiting import eventually

LEASE = 60.0
LEASE_EXPIRED = "LeaseExpired"


async def claim_one(store: SqlJobStore, *, lease_seconds: float = LEASE) -> Claim:
    [claim] = await store.claim(worker_id="w1", queues=(), limit=1, lease_seconds=lease_seconds)
    return claim


# promotion ------------------------------------------------------------------------------


async def test_promote_due_queues_retryable_jobs_whose_backoff_ended(store: SqlJobStore) -> None:
    await store.enqueue_many([NewJob(task="t", queue="a"), NewJob(task="t", queue="b")])
    claims = await store.claim(worker_id="w1", queues=(), limit=2, lease_seconds=LEASE)
    failure = ErrorInfo(type="E", message="m", attempt=1)
    await store.settle([Settlement(c.job.id, c.token, Retrying(failure, 0)) for c in claims])

    first, second = await store.promote_due(limit=1), await store.promote_due(limit=10)
    assert (first.promoted, second.promoted) == (1, 1)
    assert (await store.promote_due(limit=10)).promoted == 0
    ready = {job.id: job for job in first.ready + second.ready}
    assert ready == {c.job.id: ReadyJob(c.job.id, c.job.queue, c.job.priority) for c in claims}
    states = {(await store.get(claim.job.id)).state for claim in claims}
    assert states == {JobState.QUEUED}


async def test_promote_due_keeps_the_jobs_place_in_line(store: SqlJobStore) -> None:
    due = (await store.enqueue(NewJob(task="t", delay=0.1))).job
    await eventually(lambda: promoted_count(store), timeout=10, message="promotion")

    promoted = await store.get(due.id)

    assert (promoted.state, promoted.run_at) == (JobState.QUEUED, due.run_at)


# rescue ---------------------------------------------------------------------------------


async def test_an_expired_lease_puts_the_job_back_in_the_queue(store: SqlJobStore) -> None:
    await store.enqueue(NewJob(task="t", max_attempts=3))
    lost = await claim_one(store, lease_seconds=-1)

    outcome = await store.rescue_expired(limit=10)

    assert (outcome.rescued, outcome.dead_lettered) == (1, 0)
    assert outcome.ready == (ReadyJob(lost.job.id, lost.job.queue, lost.job.priority),)
    job = await store.get(lost.job.id)
    assert job.state is JobState.QUEUED
    assert job.attempt == 1  # counted at claim: a job that kills workers runs out of attempts
    assert job.error is not None
    assert (job.error.type, job.error.attempt) == (LEASE_EXPIRED, 1)
    assert "lease expired" in job.error.message
    again = await claim_one(store)
    assert (again.job.id, again.job.attempt) == (lost.job.id, 2)


async def test_an_expired_lease_on_the_last_attempt_dead_letters_the_job(
    store: SqlJobStore,
) -> None:
    await store.enqueue(NewJob(task="t", max_attempts=1))
    lost = await claim_one(store, lease_seconds=-1)

    outcome = await store.rescue_expired(limit=10)

    assert (outcome.rescued, outcome.dead_lettered) == (0, 1)
    assert outcome.ready == ()  # failed: not ready for anyone
    job = await store.get(lost.job.id)
    assert job.state is JobState.FAILED
    assert job.finished_at is not None
    assert [error.type for error in job.errors] == [LEASE_EXPIRED]


async def test_an_expired_lease_with_a_cancel_request_cancels_the_job(
    store: SqlJobStore,
) -> None:
    await store.enqueue(NewJob(task="t"))
    lost = await claim_one(store, lease_seconds=-1)
    await store.cancel(lost.job.id)

    await store.rescue_expired(limit=10)

    job = await store.get(lost.job.id)
    assert job.state is JobState.CANCELLED
    assert job.finished_at is not None
    assert job.errors == ()


async def test_rescue_leaves_live_leases_alone(store: SqlJobStore) -> None:
    await store.enqueue(NewJob(task="t"))
    held = await claim_one(store)

    outcome = await store.rescue_expired(limit=10)

    assert (outcome.rescued, outcome.dead_lettered) == (0, 0)
    assert (await store.get(held.job.id)).state is JobState.RUNNING


async def test_rescue_works_off_a_backlog_in_limited_passes(store: SqlJobStore) -> None:
    await store.enqueue_many([NewJob(task="t") for _ in range(5)])
    await store.claim(worker_id="w1", queues=(), limit=5, lease_seconds=-1)

    passes = [(await store.rescue_expired(limit=2)).rescued for _ in range(4)]

    assert passes == [2, 2, 1, 0]


# retention ------------------------------------------------------------------------------


async def test_prune_deletes_old_finished_jobs_only(store: SqlJobStore) -> None:
    await store.enqueue_many([NewJob(task="t") for _ in range(4)])
    claims = await store.claim(worker_id="w1", queues=(), limit=3, lease_seconds=LEASE)
    failure = ErrorInfo(type="E", message="m", attempt=1)
    await store.settle(
        [
            Settlement(claims[0].job.id, claims[0].token, Completed(1)),
            Settlement(claims[1].job.id, claims[1].token, Failed(failure)),
        ]
    )

    assert await store.prune(older_than_seconds=3600, limit=100) == 0
    assert await store.prune(older_than_seconds=-60, limit=1) == 1
    assert await store.prune(older_than_seconds=-60, limit=100) == 1
    counts = await store.counts()
    assert counts.by_state == {JobState.RUNNING: 1, JobState.QUEUED: 1}


# leadership -----------------------------------------------------------------------------


async def test_leadership_is_held_by_one_store_at_a_time(database_url: str) -> None:
    first = await SqlJobStore.open(database_url)
    second = await SqlJobStore.open(database_url)
    try:
        assert await first.try_lead(holder="monitor-1", ttl_seconds=30)
        assert await first.try_lead(holder="monitor-1", ttl_seconds=30)  # renewing
        assert not await second.try_lead(holder="monitor-2", ttl_seconds=30)

        await first.resign(holder="monitor-1")

        assert await second.try_lead(holder="monitor-2", ttl_seconds=30)
        assert not await first.try_lead(holder="monitor-1", ttl_seconds=30)
    finally:
        await first.close()
        await second.close()


async def test_resigning_leadership_one_does_not_hold_changes_nothing(
    database_url: str,
) -> None:
    first = await SqlJobStore.open(database_url)
    second = await SqlJobStore.open(database_url)
    try:
        assert await first.try_lead(holder="monitor-1", ttl_seconds=30)
        await second.resign(holder="monitor-2")
        assert not await second.try_lead(holder="monitor-2", ttl_seconds=30)
    finally:
        await first.close()
        await second.close()


async def test_closing_a_leaders_store_frees_the_leadership(database_url: str) -> None:
    first = await SqlJobStore.open(database_url)
    second = await SqlJobStore.open(database_url)
    try:
        assert await first.try_lead(holder="monitor-1", ttl_seconds=30)
        await first.resign(holder="monitor-1")
        await first.close()
        assert await second.try_lead(holder="monitor-2", ttl_seconds=30)
    finally:
        await second.close()


async def test_an_unrenewed_leadership_lease_expires_on_sqlite(sqlite_url: str) -> None:
    first = await SqlJobStore.open(sqlite_url)
    second = await SqlJobStore.open(sqlite_url)
    try:
        assert await first.try_lead(holder="monitor-1", ttl_seconds=-1)
        assert await second.try_lead(holder="monitor-2", ttl_seconds=30)
        assert not await first.try_lead(holder="monitor-1", ttl_seconds=30)
    finally:
        await first.close()
        await second.close()


@pytest.mark.postgres
async def test_a_leader_whose_session_dies_loses_leadership(postgres_url: str) -> None:
    first = await SqlJobStore.open(postgres_url)
    second = await SqlJobStore.open(postgres_url)
    try:
        assert await first.try_lead(holder="monitor-1", ttl_seconds=30)
        async with second.engine.begin() as connection:
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            )

        async def second_leads() -> bool:
            return await second.try_lead(holder="monitor-2", ttl_seconds=30)

        await eventually(second_leads, timeout=10, message="the second store to lead")
        assert not await first.try_lead(holder="monitor-1", ttl_seconds=30)
    finally:
        await first.close()
        await second.close()


async def promoted_count(store: SqlJobStore) -> int:
    return (await store.promote_due(limit=10)).promoted
