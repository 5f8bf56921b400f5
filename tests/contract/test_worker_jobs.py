"""A worker runs what is enqueued: results are stored, failures are retried with backoff
and end in the dead-letter queue, and the worker shows itself and its tasks in the store."""

from __future__ import annotations

import asyncio
import threading
from typing import NoReturn

from pydantic import BaseModel, field_serializer, field_validator

from conveyor.core.errors import Retry
from conveyor.core.job import JobState, NewJob
from conveyor.runtime.context import JobContext
from conveyor.runtime.registry import TaskRegistry
from conveyor.store.sql import SqlJobStore
from tests.backends import ON_EVERY_BROKER, Deployment
from tests.contract.worker_harness import running_worker
from tests.waiting import wait_for_state

pytestmark = ON_EVERY_BROKER

registry = TaskRegistry()


@registry.task(name="square_sum", queue="math")
async def square_sum(numbers: list[float]) -> float:
    return sum(number * number for number in numbers)


@registry.task(name="thread_name")
def thread_name() -> str:
    return threading.current_thread().name


@registry.task(name="always_fails")
async def always_fails(reason: str) -> NoReturn:
    raise ValueError(reason)


@registry.task(name="retry_once_later")
async def retry_once_later(delay: float, ctx: JobContext) -> int:
    if ctx.attempt == 1:
        raise Retry(delay=delay, reason="not yet")
    return ctx.attempt


@registry.task(name="too_slow", timeout=0.2)
async def too_slow() -> None:
    await asyncio.sleep(60)


async def test_async_and_plain_jobs_complete_with_their_results_stored(
    deployment: Deployment, store: SqlJobStore
) -> None:
    async with running_worker(deployment, registry) as running:
        math = await store.enqueue(
            NewJob(task="square_sum", queue="math", args={"numbers": [1, 2, 3]})
        )
        plain = await store.enqueue(NewJob(task="thread_name"))

        done = await wait_for_state(store, math.job.id, JobState.COMPLETED)
        threaded = await wait_for_state(store, plain.job.id, JobState.COMPLETED)

    assert (done.result, done.attempt, done.errors) == (14.0, 1, ())
    assert done.worker == running.worker.id
    assert done.finished_at is not None
    # Plain functions run in the worker's thread pool, never on its event loop.
    assert threaded.result.startswith("conveyor-job")


async def test_many_jobs_are_claimed_in_batches_and_all_complete(
    deployment: Deployment, store: SqlJobStore
) -> None:
    jobs = [NewJob(task="square_sum", queue="math", args={"numbers": [n]}) for n in range(30)]
    enqueued = await store.enqueue_many(jobs)

    async with running_worker(deployment, registry, concurrency=4):
        results = [
            (await wait_for_state(store, item.job.id, JobState.COMPLETED)).result
            for item in enqueued
        ]

    assert results == [float(n * n) for n in range(30)]


async def test_the_worker_registers_its_tasks_and_itself_and_deregisters_when_stopped(
    deployment: Deployment, store: SqlJobStore
) -> None:
    async with running_worker(deployment, registry, queues=("math", "default")) as running:
        workers = await store.list_workers()
        tasks = {info.name: info for info in await store.list_tasks()}

    assert [(info.id, info.queues, info.concurrency) for info in workers] == [
        (running.worker.id, ("math", "default"), 4)
    ]
    assert tasks["square_sum"].queue == "math"
    assert set(tasks) == set(registry.names())
    assert await store.list_workers(include_dead=True) == []


async def test_a_failing_job_is_retried_and_ends_failed_with_one_error_per_attempt(
    deployment: Deployment, store: SqlJobStore
) -> None:
    async with running_worker(deployment, registry):
        job = (
            await store.enqueue(
                NewJob(task="always_fails", args={"reason": "boom"}, max_attempts=3)
            )
        ).job
        failed = await wait_for_state(store, job.id, JobState.FAILED)

    assert failed.attempt == 3
    assert [(error.type, error.message, error.attempt) for error in failed.errors] == [
        ("ValueError", "boom", 1),
        ("ValueError", "boom", 2),
        ("ValueError", "boom", 3),
    ]


async def test_retry_with_a_delay_waits_that_long_before_the_next_attempt(
    deployment: Deployment, store: SqlJobStore
) -> None:
    async with running_worker(deployment, registry):
        job = (await store.enqueue(NewJob(task="retry_once_later", args={"delay": 1.5}))).job
        waiting = await wait_for_state(store, job.id, JobState.RETRYABLE)
        done = await wait_for_state(store, job.id, JobState.COMPLETED)

    assert waiting.started_at is not None
    assert done.started_at is not None
    # Both instants come from the database clock.
    assert (waiting.run_at - waiting.started_at).total_seconds() >= 1.5
    assert done.started_at >= waiting.run_at
    assert (done.result, [error.message for error in done.errors]) == (2, ["not yet"])


async def test_a_job_past_its_time_limit_follows_the_retry_policy(
    deployment: Deployment, store: SqlJobStore
) -> None:
    async with running_worker(deployment, registry):
        job = (await store.enqueue(NewJob(task="too_slow", max_attempts=2))).job
        failed = await wait_for_state(store, job.id, JobState.FAILED)

    assert failed.attempt == 2
    assert [error.type for error in failed.errors] == ["conveyor.core.errors.JobTimeout"] * 2


async def test_a_worker_takes_jobs_only_from_its_queues(
    deployment: Deployment, store: SqlJobStore
) -> None:
    async with running_worker(deployment, registry, queues=("math",)):
        other = (await store.enqueue(NewJob(task="thread_name", queue="reports"))).job
        mine = (
            await store.enqueue(NewJob(task="square_sum", queue="math", args={"numbers": [2]}))
        ).job
        await wait_for_state(store, mine.id, JobState.COMPLETED)
        # It claimed after `other` was enqueued (it then ran `mine`), yet left `other` alone.
        assert (await store.get(other.id)).state is JobState.QUEUED


class Reading(BaseModel):
    """Records the thread that validates it and the one that serializes it."""

    value: float

    @field_validator("value")
    @classmethod
    def note_validation(cls, value: float) -> float:
        threads_seen["validated"] = threading.current_thread().name
        return value

    @field_serializer("value")
    def note_serialization(self, value: float) -> float:
        threads_seen["serialized"] = threading.current_thread().name
        return value


threads_seen: dict[str, str] = {}


@registry.task(name="double_reading")
async def double_reading(reading: Reading) -> Reading:
    threads_seen["ran"] = threading.current_thread().name
    return Reading(value=reading.value * 2)


async def test_an_async_attempt_binds_runs_and_converts_its_result_off_the_control_loop(
    deployment: Deployment, store: SqlJobStore
) -> None:
    """Validators and serializers are user code too: a slow one must not stall claims,
    settles or leases, so the whole attempt runs on the handler loop's thread."""
    threads_seen.clear()
    async with running_worker(deployment, registry):
        job = NewJob(task="double_reading", args={"reading": {"value": 2}})
        enqueued = await store.enqueue(job)
        done = await wait_for_state(store, enqueued.job.id, JobState.COMPLETED)

    assert done.result == {"value": 4.0}
    assert set(threads_seen) == {"validated", "ran", "serialized"}
    assert all(name.startswith("conveyor-handlers") for name in threads_seen.values())
