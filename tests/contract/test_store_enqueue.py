"""Accepting jobs: one job, batches, idempotency keys, and joining a caller's transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from conveyor.core.errors import IdempotencyConflict, JobNotFound, StoreUnavailable
from conveyor.core.job import JobState, NewJob
from conveyor.ports import CounterEvent, JobFilter
from conveyor.store.enqueue import CHUNK_JOBS
from conveyor.store.sql import NOTIFY_CHANNEL, SqlJobStore
from tests.waiting import eventually

DEADLINE = 10.0


async def count_jobs(store: SqlJobStore, tenant: str = "default") -> int:
    counts = await store.counts(tenant=tenant)
    return sum(counts.by_state.values())


async def test_enqueued_job_is_queued_with_everything_it_was_given(store: SqlJobStore) -> None:
    submitted = NewJob(
        task="math.square",
        args={"numbers": [1, 2.5, -3], "label": "héllo ✓", "nested": {"a": None, "b": True}},
        queue="math",
        priority=7,
        max_attempts=3,
        timeout=12.5,
        tags=("billing", "eu"),
    )
    enqueued = await store.enqueue(submitted)

    job = enqueued.job
    assert enqueued.created
    assert job.state is JobState.QUEUED
    assert (job.task, job.queue, job.priority) == ("math.square", "math", 7)
    assert job.args == submitted.args
    assert (job.attempt, job.max_attempts, job.timeout) == (0, 3, 12.5)
    assert job.tags == ("billing", "eu")
    assert job.errors == ()
    assert job.result is None
    assert job.progress is None
    assert job.finished_at is None
    assert job.run_at == job.created_at
    assert await store.get(job.id) == job


async def test_job_ids_are_time_ordered_uuids(store: SqlJobStore) -> None:
    first = await store.enqueue(NewJob(task="t"))
    second = await store.enqueue(NewJob(task="t"))

    assert len(first.job.id) == 36
    assert first.job.id[14] == "7"
    assert first.job.id < second.job.id


async def test_delay_schedules_the_job_that_many_seconds_later(store: SqlJobStore) -> None:
    job = (await store.enqueue(NewJob(task="t", delay=3600))).job

    assert job.state is JobState.SCHEDULED
    assert job.run_at - job.created_at == pytest.approx(
        timedelta(hours=1), abs=timedelta(seconds=1)
    )


async def test_run_at_in_the_future_schedules_and_in_the_past_queues(store: SqlJobStore) -> None:
    later = datetime(2999, 1, 1, 12, 30, 15, 250000, tzinfo=UTC)
    earlier = datetime(2001, 1, 1, tzinfo=UTC)

    scheduled = (await store.enqueue(NewJob(task="t", run_at=later))).job
    queued = (await store.enqueue(NewJob(task="t", run_at=earlier))).job

    assert (scheduled.state, scheduled.run_at) == (JobState.SCHEDULED, later)
    assert (queued.state, queued.run_at) == (JobState.QUEUED, earlier)


async def test_repeated_idempotency_key_returns_the_existing_job(store: SqlJobStore) -> None:
    first = await store.enqueue(NewJob(task="t", args={"n": 1}, idempotency_key="order-42"))
    again = await store.enqueue(NewJob(task="t", args={"n": 2}, idempotency_key="order-42"))

    assert first.created
    assert not again.created
    assert again.job == first.job
    assert await count_jobs(store) == 1


async def test_idempotency_keys_are_scoped_to_a_tenant(store: SqlJobStore) -> None:
    ours = await store.enqueue(NewJob(task="t", idempotency_key="k", tenant="acme"))
    theirs = await store.enqueue(NewJob(task="t", idempotency_key="k", tenant="globex"))

    assert ours.created
    assert theirs.created
    assert ours.job.id != theirs.job.id


async def test_concurrent_enqueues_with_one_key_create_exactly_one_job(database_url: str) -> None:
    stores = [await SqlJobStore.open(database_url) for _ in range(5)]
    try:
        submissions = [
            store.enqueue(NewJob(task="t", idempotency_key="once"))
            for store in stores
            for _ in range(10)
        ]
        results = await asyncio.gather(*submissions)
        assert len({result.job.id for result in results}) == 1
        assert sum(result.created for result in results) == 1
        assert await count_jobs(stores[0]) == 1
    finally:
        for store in stores:
            await store.close()


async def test_a_repeat_with_the_same_fingerprint_returns_the_existing_job(
    store: SqlJobStore,
) -> None:
    first = await store.enqueue(NewJob(task="t", idempotency_key="k", fingerprint="same"))
    again = await store.enqueue(NewJob(task="t", idempotency_key="k", fingerprint="same"))
    [batched] = await store.enqueue_many(
        [NewJob(task="t", idempotency_key="k", fingerprint="same")]
    )

    assert (again.created, again.job) == (False, first.job)
    assert (batched.created, batched.job) == (False, first.job)
    assert await count_jobs(store) == 1


async def test_a_key_reused_for_a_different_job_is_refused(store: SqlJobStore) -> None:
    first = await store.enqueue(
        NewJob(task="t", args={"n": 1}, idempotency_key="k", fingerprint="a")
    )

    with pytest.raises(IdempotencyConflict) as refused:
        await store.enqueue(NewJob(task="t", args={"n": 2}, idempotency_key="k", fingerprint="b"))

    assert (refused.value.key, refused.value.job_id) == ("k", first.job.id)
    assert await store.get(first.job.id) == first.job
    assert await count_jobs(store) == 1


@pytest.mark.parametrize(("stored", "repeated"), [("a", None), (None, "b")], ids=["new", "old"])
async def test_a_job_without_a_fingerprint_matches_any_repeat(
    store: SqlJobStore, stored: str | None, repeated: str | None
) -> None:
    first = await store.enqueue(NewJob(task="t", idempotency_key="k", fingerprint=stored))
    again = await store.enqueue(NewJob(task="t", idempotency_key="k", fingerprint=repeated))

    assert (again.created, again.job) == (False, first.job)


async def test_a_batch_reusing_a_key_for_a_different_job_stores_nothing(
    store: SqlJobStore,
) -> None:
    first = await store.enqueue(NewJob(task="t", idempotency_key="k", fingerprint="a"))

    with pytest.raises(IdempotencyConflict) as refused:
        await store.enqueue_many(
            [
                NewJob(task="t", idempotency_key="new", fingerprint="x"),
                NewJob(task="t"),
                NewJob(task="t", idempotency_key="k", fingerprint="b"),
            ]
        )

    assert refused.value.job_id == first.job.id
    assert await count_jobs(store) == 1
    again = await store.enqueue(NewJob(task="t", idempotency_key="new", fingerprint="y"))
    assert again.created  # the refused batch left no job behind under its keys


async def test_a_batch_using_one_key_for_two_different_jobs_stores_nothing(
    store: SqlJobStore,
) -> None:
    with pytest.raises(IdempotencyConflict, match="'k'"):
        await store.enqueue_many(
            [
                NewJob(task="t", idempotency_key="k", fingerprint="a"),
                NewJob(task="t", idempotency_key="k", fingerprint="b"),
            ]
        )

    assert await count_jobs(store) == 0


async def test_concurrent_different_jobs_under_one_key_create_one_and_refuse_the_rest(
    database_url: str,
) -> None:
    stores = [await SqlJobStore.open(database_url) for _ in range(4)]
    try:
        submissions = [
            store.enqueue(NewJob(task="t", idempotency_key="once", fingerprint=str(index)))
            for index, store in enumerate(stores)
        ]
        results = await asyncio.gather(*submissions, return_exceptions=True)

        created = [result for result in results if not isinstance(result, BaseException)]
        refused = [result for result in results if isinstance(result, IdempotencyConflict)]
        assert len(created) == 1
        assert created[0].created
        assert len(refused) == len(stores) - 1
        assert {error.job_id for error in refused} == {created[0].job.id}
        assert await count_jobs(stores[0]) == 1
    finally:
        for store in stores:
            await store.close()


async def test_enqueue_many_inserts_a_thousand_jobs_in_input_order(store: SqlJobStore) -> None:
    submitted = [
        NewJob(task=f"task-{index}", args={"index": index}, tags=(str(index),))
        for index in range(1200)
    ]
    results = await store.enqueue_many(submitted)

    assert [result.job.task for result in results] == [job.task for job in submitted]
    assert all(result.created for result in results)
    assert [result.job.args["index"] for result in results] == list(range(1200))
    assert await count_jobs(store) == 1200
    # Each returned job is the job as stored, column for column.
    assert [await store.get(results[index].job.id) for index in (0, 599, 1199)] == [
        results[index].job for index in (0, 599, 1199)
    ]


async def test_enqueue_many_resolves_idempotency_keys_within_and_across_batches(
    store: SqlJobStore,
) -> None:
    existing = await store.enqueue(NewJob(task="t", idempotency_key="a"))
    results = await store.enqueue_many(
        [
            NewJob(task="t", idempotency_key="a"),
            NewJob(task="t", idempotency_key="b"),
            NewJob(task="t"),
            NewJob(task="t", idempotency_key="b"),
        ]
    )

    assert [result.created for result in results] == [False, True, True, False]
    assert results[0].job.id == existing.job.id
    assert results[3].job.id == results[1].job.id
    assert await count_jobs(store) == 3


async def test_enqueue_many_stores_nothing_when_one_job_is_rejected(store: SqlJobStore) -> None:
    with pytest.raises(IntegrityError):
        await store.enqueue_many([NewJob(task="good"), NewJob(task="bad", max_attempts=0)])

    assert await count_jobs(store) == 0


async def test_a_batch_alike_but_for_its_arguments_stores_every_field_of_each_job(
    store: SqlJobStore,
) -> None:
    # The shape of one enqueue_many call, which PostgreSQL binds once for the whole batch.
    at = datetime.now(UTC) + timedelta(hours=2)
    alike: dict[str, Any] = {
        "task": "report",
        "queue": "reports",
        "priority": -4,
        "max_attempts": 9,
        "timeout": 2.5,
        "run_at": at,
        "tags": ("eu", "monthly"),
        "tenant": "acme",
    }
    results = await store.enqueue_many(
        [NewJob(args={"n": index, "name": f"é{index}"}, **alike) for index in range(300)]
    )

    assert [result.job.args for result in results] == [
        {"n": index, "name": f"é{index}"} for index in range(300)
    ]
    for result in (results[0], results[299]):
        job = result.job
        assert (job.task, job.queue, job.priority, job.tenant) == ("report", "reports", -4, "acme")
        assert (job.max_attempts, job.timeout, job.tags) == (9, 2.5, ("eu", "monthly"))
        assert (job.state, job.run_at) == (JobState.SCHEDULED, at)
        assert await store.get(job.id, tenant="acme") == job
    assert await count_jobs(store, tenant="acme") == 300


async def test_a_batch_alike_with_a_delay_schedules_every_job(store: SqlJobStore) -> None:
    results = await store.enqueue_many(
        [NewJob(task="t", args={"i": i}, delay=60) for i in range(3)]
    )

    for result in results:
        assert result.job.state is JobState.SCHEDULED
        assert result.job.run_at - result.job.created_at == timedelta(seconds=60)
        assert await store.get(result.job.id) == result.job


async def test_a_batch_alike_under_one_idempotency_key_creates_one_job(store: SqlJobStore) -> None:
    results = await store.enqueue_many(
        [NewJob(task="t", idempotency_key="once", fingerprint="same") for _ in range(3)]
    )

    assert [result.created for result in results] == [True, False, False]
    assert {result.job.id for result in results} == {results[0].job.id}
    assert await count_jobs(store) == 1


async def test_a_batch_alike_stores_nothing_when_its_options_are_rejected(
    store: SqlJobStore,
) -> None:
    with pytest.raises(IntegrityError):
        await store.enqueue_many(
            [NewJob(task="bad", args={"i": i}, max_attempts=0) for i in range(3)]
        )

    assert await count_jobs(store) == 0


async def test_enqueue_many_of_nothing_stores_nothing(store: SqlJobStore) -> None:
    assert await store.enqueue_many([]) == []


async def test_enqueue_many_mixes_ready_and_scheduled_jobs(store: SqlJobStore) -> None:
    at = datetime.now(UTC) + timedelta(hours=1)
    results = await store.enqueue_many(
        [NewJob(task="now"), NewJob(task="later", delay=60), NewJob(task="at", run_at=at)]
    )

    assert [result.job.state for result in results] == [JobState.QUEUED, *[JobState.SCHEDULED] * 2]
    assert results[2].job.run_at == at
    assert [await store.get(result.job.id) for result in results] == [r.job for r in results]


# PostgreSQL: the caller's transaction and wake-ups ----------------------------------------


def asyncpg_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.mark.postgres
async def test_enqueue_in_a_rolled_back_transaction_leaves_no_job(postgres_url: str) -> None:
    store = await SqlJobStore.open(postgres_url)
    application = create_async_engine(asyncpg_url(postgres_url))
    try:
        async with application.connect() as connection:
            enqueued = await store.enqueue(NewJob(task="t"), connection=connection)
            await connection.rollback()
        with pytest.raises(JobNotFound):
            await store.get(enqueued.job.id)
    finally:
        await application.dispose()
        await store.close()


@pytest.mark.postgres
async def test_enqueue_in_a_committed_transaction_keeps_the_job(postgres_url: str) -> None:
    store = await SqlJobStore.open(postgres_url)
    application = create_async_engine(asyncpg_url(postgres_url))
    try:
        async with application.begin() as connection:
            enqueued = await store.enqueue(NewJob(task="t"), connection=connection)
            page = await store.list_jobs(JobFilter())
            assert page.items == []  # not visible to others before the commit
        assert (await store.get(enqueued.job.id)).state is JobState.QUEUED
    finally:
        await application.dispose()
        await store.close()


@pytest.fixture
async def notifications(postgres_url: str) -> AsyncIterator[asyncio.Queue[str]]:
    """Payloads arriving on the broker's channel, heard by a separate session."""
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(postgres_url)

    def heard(connection: object, pid: int, channel: str, payload: str) -> None:
        received.put_nowait(payload)

    await listener.add_listener(NOTIFY_CHANNEL, heard)
    yield received
    await listener.close()


@pytest.mark.postgres
async def test_ready_jobs_wake_listeners_with_their_queue(
    postgres_url: str, notifications: asyncio.Queue[str]
) -> None:
    store = await SqlJobStore.open(postgres_url)
    try:
        await store.enqueue(NewJob(task="t", queue="later", delay=3600))
        await store.enqueue(NewJob(task="t", queue="emails"))
        async with asyncio.timeout(DEADLINE):
            assert await notifications.get() == "emails"
        await store.enqueue_many([NewJob(task="t", queue="batch") for _ in range(3)])
        async with asyncio.timeout(DEADLINE):
            assert await notifications.get() == "batch"
        assert notifications.empty()  # the scheduled job woke nobody; the batch woke once
    finally:
        await store.close()


# Large batches (on PostgreSQL: a statement per chunk, in one transaction) ---------------

LARGE_BATCH = 2 * CHUNK_JOBS + 7  # three chunks, the last one short


def alike_batch(count: int, queue: str = "batch") -> list[NewJob]:
    """The shape of one enqueue_many call: the same task and options, each its own args."""
    return [NewJob(task="t", queue=queue, args={"index": index}) for index in range(count)]


async def test_a_batch_of_several_chunks_is_stored_whole_in_order_and_counted(
    store: SqlJobStore,
) -> None:
    results = await store.enqueue_many(alike_batch(LARGE_BATCH))

    assert [result.job.args["index"] for result in results] == list(range(LARGE_BATCH))
    assert all(result.created and result.job.state is JobState.QUEUED for result in results)
    assert len({result.job.id for result in results}) == LARGE_BATCH
    assert await count_jobs(store) == LARGE_BATCH
    assert (await store.metrics()).counters[(CounterEvent.ENQUEUED, "batch")] == LARGE_BATCH
    for index in (0, CHUNK_JOBS - 1, CHUNK_JOBS, LARGE_BATCH - 1):  # each side of a chunk
        assert await store.get(results[index].job.id) == results[index].job
    claimed = await store.claim(
        worker_id="w", queues=["batch"], limit=LARGE_BATCH, lease_seconds=30
    )
    assert [claim.job.args["index"] for claim in claimed] == list(range(LARGE_BATCH))


@pytest.mark.postgres
async def test_a_batch_of_several_chunks_wakes_listeners_once(
    postgres_url: str, notifications: asyncio.Queue[str]
) -> None:
    store = await SqlJobStore.open(postgres_url)
    try:
        await store.enqueue_many(alike_batch(LARGE_BATCH))
        async with asyncio.timeout(DEADLINE):
            assert await notifications.get() == "batch"
        await store.enqueue(NewJob(task="t", queue="marker"))
        async with asyncio.timeout(DEADLINE):
            assert await notifications.get() == "marker"  # nothing more came from the batch
    finally:
        await store.close()


REFUSE_INDEX = 2 * CHUNK_JOBS + 1  # in the last chunk, sent after two others went through


async def install_trigger(postgres_url: str, body: str) -> None:
    """A trigger on inserted jobs: `body` runs for the job whose args.index is REFUSE_INDEX."""
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute(
            f"""
            CREATE FUNCTION test_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.args->>'index' = '{REFUSE_INDEX}' THEN {body} END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_on_insert BEFORE INSERT ON conveyor_jobs
                FOR EACH ROW EXECUTE FUNCTION test_on_insert();
            """
        )
    finally:
        await connection.close()


@pytest.mark.postgres
async def test_a_batch_refused_in_its_last_chunk_stores_nothing(postgres_url: str) -> None:
    await install_trigger(postgres_url, "RAISE EXCEPTION 'refused by the test';")
    store = await SqlJobStore.open(postgres_url)
    try:
        with pytest.raises(DBAPIError, match="refused by the test"):
            await store.enqueue_many(alike_batch(LARGE_BATCH))

        assert await count_jobs(store) == 0
        assert (CounterEvent.ENQUEUED, "batch") not in (await store.metrics()).counters
        # The connection went back to the pool usable: the next batches are stored.
        stored = await store.enqueue_many(alike_batch(REFUSE_INDEX))
        assert len(stored) == await count_jobs(store) == REFUSE_INDEX
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_batch_whose_connection_dies_midway_stores_nothing(postgres_url: str) -> None:
    lock = 4242
    await install_trigger(postgres_url, f"PERFORM pg_advisory_xact_lock({lock});")
    holder = await asyncpg.connect(postgres_url)
    store = await SqlJobStore.open(postgres_url)
    try:
        await holder.execute(f"SELECT pg_advisory_lock({lock})")  # the last chunk waits on it
        inserting = asyncio.ensure_future(store.enqueue_many(alike_batch(LARGE_BATCH)))

        async def waiting_backend() -> int | None:
            pid: int | None = await holder.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database() AND pid <> pg_backend_pid()"
            )
            return pid

        pid = await eventually(waiting_backend, timeout=DEADLINE, message="the blocked chunk")
        await holder.execute("SELECT pg_terminate_backend($1)", pid)

        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(inserting, DEADLINE)
        await holder.execute(f"SELECT pg_advisory_unlock({lock})")
        assert await count_jobs(store) == 0
        assert len(await store.enqueue_many(alike_batch(LARGE_BATCH, queue="after"))) == (
            LARGE_BATCH
        )
    finally:
        await store.close()
        await holder.close()
