"""What users do to jobs: cancel, retry, delete, each allowed only from the right states."""

from __future__ import annotations

import pytest

from conveyor.core.errors import InvalidTransition, JobNotFound
from conveyor.core.job import ErrorInfo, Job, JobState, NewJob, Progress
from conveyor.core.outcome import Completed, Failed, Retrying
from conveyor.ports import Settlement
from conveyor.store.sql import SqlJobStore

LEASE = 60.0
MISSING = "018f0000-0000-7000-8000-000000000000"
FAILURE = ErrorInfo(type="ValueError", message="bad input", attempt=1)


async def running(store: SqlJobStore) -> tuple[Job, str]:
    job = (await store.enqueue(NewJob(task="t"))).job
    [claim] = await store.claim(worker_id="w1", queues=(), limit=1, lease_seconds=LEASE)
    assert claim.job.id == job.id
    return claim.job, claim.token


async def finished(store: SqlJobStore, outcome: Completed | Failed) -> Job:
    job, token = await running(store)
    await store.settle([Settlement(job.id, token, outcome, Progress(50.0, "half"))])
    return await store.get(job.id)


async def retryable(store: SqlJobStore) -> Job:
    job, token = await running(store)
    await store.settle([Settlement(job.id, token, Retrying(FAILURE, 3600))])
    return await store.get(job.id)


# cancel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [None, 3600.0], ids=["queued", "scheduled"])
async def test_cancel_ends_a_waiting_job_at_once(store: SqlJobStore, delay: float | None) -> None:
    job = (await store.enqueue(NewJob(task="t", delay=delay))).job

    cancelled = await store.cancel(job.id)

    assert cancelled.state is JobState.CANCELLED
    assert cancelled.finished_at is not None
    assert await store.get(job.id) == cancelled
    assert await store.claim(worker_id="w1", queues=(), limit=1, lease_seconds=LEASE) == []


async def test_cancel_ends_a_job_waiting_to_retry(store: SqlJobStore) -> None:
    job = await retryable(store)

    assert (await store.cancel(job.id)).state is JobState.CANCELLED


async def test_cancel_asks_a_running_job_to_stop(store: SqlJobStore) -> None:
    job, _ = await running(store)

    requested = await store.cancel(job.id)
    again = await store.cancel(job.id)

    assert requested.state is JobState.RUNNING
    assert requested.cancel_requested
    assert again == requested


async def test_cancel_of_a_finished_job_is_an_invalid_transition(store: SqlJobStore) -> None:
    job = await finished(store, Completed(1))

    with pytest.raises(InvalidTransition) as raised:
        await store.cancel(job.id)

    assert (raised.value.action, raised.value.state) == ("cancel", "completed")
    assert await store.get(job.id) == job


async def test_cancel_of_a_missing_or_foreign_job_is_not_found(store: SqlJobStore) -> None:
    theirs = (await store.enqueue(NewJob(task="t", tenant="globex"))).job

    with pytest.raises(JobNotFound):
        await store.cancel(MISSING)
    with pytest.raises(JobNotFound):
        await store.cancel(theirs.id)
    assert (await store.get(theirs.id, tenant="globex")).state is JobState.QUEUED


# retry ----------------------------------------------------------------------------------


async def test_retry_puts_a_failed_job_back_from_its_first_attempt(store: SqlJobStore) -> None:
    job = await finished(store, Failed(FAILURE))

    retried = await store.retry(job.id)

    assert retried.state is JobState.QUEUED
    assert retried.attempt == 0
    assert retried.finished_at is None
    assert retried.result is None
    assert retried.progress is None
    assert retried.errors == (FAILURE,)  # history is kept
    [claim] = await store.claim(worker_id="w2", queues=(), limit=1, lease_seconds=LEASE)
    assert (claim.job.id, claim.job.attempt) == (job.id, 1)


async def test_retry_puts_a_cancelled_job_back(store: SqlJobStore) -> None:
    job = (await store.enqueue(NewJob(task="t"))).job
    await store.cancel(job.id)

    assert (await store.retry(job.id)).state is JobState.QUEUED


@pytest.mark.parametrize("state", ["queued", "running", "completed"])
async def test_retry_of_a_job_that_did_not_fail_is_an_invalid_transition(
    store: SqlJobStore, state: str
) -> None:
    if state == "queued":
        job = (await store.enqueue(NewJob(task="t"))).job
    elif state == "running":
        job, _ = await running(store)
    else:
        job = await finished(store, Completed(1))

    with pytest.raises(InvalidTransition) as raised:
        await store.retry(job.id)

    assert raised.value.state == state


async def test_retry_of_a_missing_job_is_not_found(store: SqlJobStore) -> None:
    with pytest.raises(JobNotFound):
        await store.retry(MISSING)


# delete ---------------------------------------------------------------------------------


async def test_delete_removes_a_finished_job(store: SqlJobStore) -> None:
    job = await finished(store, Completed(1))

    await store.delete(job.id)

    with pytest.raises(JobNotFound):
        await store.get(job.id)


async def test_delete_of_an_unfinished_job_is_an_invalid_transition(store: SqlJobStore) -> None:
    job, _ = await running(store)

    with pytest.raises(InvalidTransition) as raised:
        await store.delete(job.id)

    assert (raised.value.action, raised.value.state) == ("delete", "running")
    assert (await store.get(job.id)).state is JobState.RUNNING


async def test_delete_of_a_missing_or_foreign_job_is_not_found(store: SqlJobStore) -> None:
    theirs = await finished(store, Completed(1))

    with pytest.raises(JobNotFound):
        await store.delete(MISSING)
    with pytest.raises(JobNotFound):
        await store.delete(theirs.id, tenant="globex")
    assert (await store.get(theirs.id)).state is JobState.COMPLETED
