"""The Python API of DESIGN.md §5, through the Conveyor facade, on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from conveyor import (
    Conveyor,
    IdempotencyConflict,
    InvalidArguments,
    InvalidSubmission,
    JobFailed,
    JobState,
    NonRetryableError,
    UnknownTask,
    blocking,
)
from conveyor.brokers.database import DatabaseBroker
from conveyor.brokers.redis import RedisBroker
from conveyor.config import Settings, load_settings
from conveyor.ports import JobFilter
from conveyor.runtime.worker import Worker
from conveyor.store.enqueue import CHUNK_JOBS
from tests.backends import ON_EVERY_BROKER, Deployment

FAST = {
    "lease_seconds": 2,
    "heartbeat_seconds": 0.5,
    "poll_interval_seconds": 0.1,
    "monitor_interval_seconds": 0.5,
    "retry_base_seconds": 0.01,
    "retry_max_seconds": 0.05,
}


def settings_of(deployment: Deployment, **options: float) -> Settings:
    return load_settings(
        database_url=deployment.database_url,
        redis_url=deployment.redis_url,
        redis_prefix=deployment.redis_prefix,
        **options,
    )


def build_app(deployment: Deployment) -> Conveyor:
    app = Conveyor(settings_of(deployment, **FAST))

    @app.task(name="math.square_sum", queue="math", max_attempts=3)
    async def square_sum(numbers: list[float]) -> float:
        return sum(number * number for number in numbers)

    @app.task(name="always.refuses")
    def refuses() -> None:
        raise NonRetryableError("the input can never work")

    return app


@pytest.fixture
async def app(deployment: Deployment) -> AsyncIterator[Conveyor]:
    application = build_app(deployment)
    yield application
    await application.close()


async def start_worker(app: Conveyor) -> tuple[Worker, asyncio.Task[None]]:
    worker = await app.build_worker()
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), timeout=30)
    return worker, running


async def stop_worker(worker: Worker, running: asyncio.Task[None]) -> None:
    worker.request_stop()
    await asyncio.wait_for(running, timeout=30)


async def count_jobs(app: Conveyor) -> int:
    return len((await app.list_jobs(JobFilter(), limit=500)).items)


async def total_jobs(app: Conveyor) -> int:
    return sum((await app.counts()).by_state.values())


@ON_EVERY_BROKER
async def test_a_task_enqueued_from_its_function_runs_and_wait_returns_the_result(
    app: Conveyor,
) -> None:
    worker, running = await start_worker(app)
    try:
        square_sum = app.registry.get("math.square_sum")
        assert square_sum is not None
        job = await square_sum.enqueue(numbers=[1, 2, 3])

        assert job.queue == "math"
        assert job.max_attempts == 3
        assert await app.wait(job.id, timeout=30) == 14.0
    finally:
        await stop_worker(worker, running)


@ON_EVERY_BROKER
async def test_wait_raises_job_failed_when_the_job_ends_in_the_dead_letter_queue(
    app: Conveyor,
) -> None:
    worker, running = await start_worker(app)
    try:
        job = await app.enqueue("always.refuses")
        with pytest.raises(JobFailed, match="the input can never work") as failure:
            await app.wait(job.id, timeout=30)
        assert failure.value.state == "failed"
        assert (await app.get(job.id)).attempt == 1  # not retryable: no second attempt
    finally:
        await stop_worker(worker, running)


@ON_EVERY_BROKER
async def test_the_broker_is_redis_exactly_when_a_redis_url_is_set(
    app: Conveyor, deployment: Deployment
) -> None:
    broker = await app.broker()
    expected = RedisBroker if deployment.uses_redis else DatabaseBroker
    assert type(broker) is expected
    await broker.ping()


@ON_EVERY_BROKER
async def test_wait_times_out_while_the_job_has_not_ended(app: Conveyor) -> None:
    job = await app.enqueue("math.square_sum", {"numbers": [1]})
    with pytest.raises(TimeoutError):
        await app.wait(job.id, timeout=0.2)


@ON_EVERY_BROKER
async def test_an_unknown_task_is_refused_and_nothing_is_stored(app: Conveyor) -> None:
    with pytest.raises(UnknownTask, match=r"'math\.cube'"):
        await app.enqueue("math.cube", {"numbers": [1]})
    assert await count_jobs(app) == 0


@ON_EVERY_BROKER
async def test_arguments_not_matching_the_signature_name_each_field_and_problem(
    app: Conveyor,
) -> None:
    with pytest.raises(InvalidArguments) as refused:
        await app.enqueue("math.square_sum", {"numbers": "many", "extra": 1})

    problems = {".".join(map(str, p.location)): p.message for p in refused.value.problems}
    assert set(problems) == {"numbers", "extra"}
    assert "unexpected" in problems["extra"]
    assert await count_jobs(app) == 0


@ON_EVERY_BROKER
@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"delay": -1}, "delay"),
        ({"priority": 10**9}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"run_at": datetime(2030, 1, 1)}, "run_at"),
        ({"queue": "has space"}, "queue"),
        ({"idempotency_key": ""}, "idempotency_key"),
    ],
)
async def test_invalid_options_are_refused_naming_the_field(
    app: Conveyor, options: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidSubmission) as refused:
        await app.enqueue("math.square_sum", {"numbers": [1]}, **options)  # type: ignore[arg-type]
    assert [problem.location[0] for problem in refused.value.problems] == [field]
    assert await count_jobs(app) == 0


@ON_EVERY_BROKER
async def test_values_json_cannot_hold_are_refused_on_every_backend(app: Conveyor) -> None:
    for bad in (float("nan"), float("inf")):
        with pytest.raises(InvalidArguments, match="numbers"):
            await app.enqueue("math.square_sum", {"numbers": [bad]})
    assert await count_jobs(app) == 0


@ON_EVERY_BROKER
async def test_a_producer_without_the_task_code_validates_against_the_registered_schema(
    app: Conveyor, deployment: Deployment
) -> None:
    worker, running = await start_worker(app)  # registers the tasks in the store
    producer = Conveyor(settings_of(deployment))
    try:
        with pytest.raises(InvalidArguments, match="numbers"):
            await producer.enqueue("math.square_sum", {"numbers": "many"})
        job = await producer.enqueue("math.square_sum", {"numbers": [2]})
        assert job.queue == "math"  # the registered task's defaults apply
        assert await producer.wait(job.id, timeout=30) == 4.0
    finally:
        await producer.close()
        await stop_worker(worker, running)


@ON_EVERY_BROKER
async def test_enqueue_many_stores_every_job_or_none(app: Conveyor) -> None:
    jobs = await app.enqueue_many("math.square_sum", [{"numbers": [1]}, {"numbers": [2]}])
    assert [job.args for job in jobs] == [{"numbers": [1.0]}, {"numbers": [2.0]}]

    with pytest.raises(InvalidArguments):
        await app.enqueue_many("math.square_sum", [{"numbers": [3]}, {"numbers": "x"}])
    assert await count_jobs(app) == 2


@ON_EVERY_BROKER
async def test_a_large_enqueue_many_stores_every_job_in_order_or_none(app: Conveyor) -> None:
    # Large enough to go in several chunks on PostgreSQL, each validated as it goes.
    count = 3 * CHUNK_JOBS + 1
    jobs = await app.enqueue_many("math.square_sum", [{"numbers": [n]} for n in range(count)])
    assert [job.args for job in jobs] == [{"numbers": [float(n)]} for n in range(count)]
    assert await total_jobs(app) == count

    refused: list[dict[str, Any]] = [{"numbers": [n]} for n in range(count)]
    refused[-1] = {"numbers": "x"}  # in the last chunk: the ones before were sent already
    with pytest.raises(InvalidArguments):
        await app.enqueue_many("math.square_sum", refused)
    assert await total_jobs(app) == count


@ON_EVERY_BROKER
async def test_enqueue_many_takes_arguments_from_any_iterable(app: Conveyor) -> None:
    jobs = await app.enqueue_many("math.square_sum", ({"numbers": [n]} for n in range(3)))
    assert [job.args for job in jobs] == [{"numbers": [float(n)]} for n in range(3)]


@ON_EVERY_BROKER
async def test_a_repeated_idempotency_key_returns_the_first_job(app: Conveyor) -> None:
    first = await app.enqueue("math.square_sum", {"numbers": [1]}, idempotency_key="order-42")
    again = await app.enqueue("math.square_sum", {"numbers": [1]}, idempotency_key="order-42")
    assert again.id == first.id
    assert await count_jobs(app) == 1


@ON_EVERY_BROKER
async def test_a_reused_idempotency_key_with_other_arguments_is_refused(app: Conveyor) -> None:
    first = await app.enqueue("math.square_sum", {"numbers": [1]}, idempotency_key="order-7")

    with pytest.raises(IdempotencyConflict, match="order-7"):
        await app.enqueue("math.square_sum", {"numbers": [2]}, idempotency_key="order-7")
    with pytest.raises(IdempotencyConflict):
        await app.enqueue(
            "math.square_sum", {"numbers": [1]}, idempotency_key="order-7", priority=9
        )

    page = await app.list_jobs()
    assert [job.id for job in page.items] == [first.id]
    assert (await app.get(first.id)).args == {"numbers": [1]}


@ON_EVERY_BROKER
async def test_blocking_runs_the_api_from_synchronous_code(app: Conveyor) -> None:
    def synchronous_caller() -> JobState:
        job = blocking(app.enqueue("math.square_sum", {"numbers": [1]}, delay=60))
        state = blocking(app.get(job.id)).state
        blocking(app.close())  # closes what the shared background loop opened
        return state

    assert await asyncio.to_thread(synchronous_caller) is JobState.SCHEDULED

    coroutine = app.counts()
    with pytest.raises(RuntimeError, match="use await"):
        blocking(coroutine)


@pytest.mark.postgres
async def test_a_job_enqueued_in_the_callers_transaction_exists_only_if_it_commits(
    postgres_url: str,
) -> None:
    app = build_app(Deployment(postgres_url))
    engine = create_async_engine(postgres_url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            await app.enqueue("math.square_sum", {"numbers": [1]}, connection=connection)
            await transaction.rollback()  # the caller's own work failed
        assert await count_jobs(app) == 0

        async with engine.begin() as connection:
            job = await app.enqueue("math.square_sum", {"numbers": [1]}, connection=connection)
        assert (await app.get(job.id)).state is JobState.QUEUED
    finally:
        await engine.dispose()
        await app.close()
