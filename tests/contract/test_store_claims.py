"""Claiming: the order workers get jobs in, what a claim records, and that a job is held
by one claimer at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conveyor.core.job import ErrorInfo, JobState, NewJob, Progress
from conveyor.core.outcome import Completed, Retrying
from conveyor.ports import Claim, ProgressUpdate, Settlement
from conveyor.store import claims
from conveyor.store.direct import compiled_for_asyncpg
from conveyor.store.sql import SqlJobStore
from conveyor.store.sqlite_writer import bound_for_sqlite
from tests.waiting import eventually

LEASE = 60.0


async def claim(
    store: SqlJobStore, *, limit: int = 10, queues: tuple[str, ...] = ()
) -> list[Claim]:
    return await store.claim(worker_id="w1", queues=queues, limit=limit, lease_seconds=LEASE)


async def test_claim_takes_higher_priority_first_and_fifo_within_a_priority(
    store: SqlJobStore,
) -> None:
    low_first = await store.enqueue(NewJob(task="low-1", priority=0))
    high_first = await store.enqueue(NewJob(task="high-1", priority=5))
    low_second = await store.enqueue(NewJob(task="low-2", priority=0))
    high_second = await store.enqueue(NewJob(task="high-2", priority=5))

    claimed = [item.job.id for item in await claim(store, limit=3)]
    rest = [item.job.id for item in await claim(store, limit=3)]

    assert claimed == [high_first.job.id, high_second.job.id, low_first.job.id]
    assert rest == [low_second.job.id]


async def test_claim_records_the_attempt_token_worker_and_start(store: SqlJobStore) -> None:
    queued = (await store.enqueue(NewJob(task="t"))).job

    [claimed] = await store.claim(worker_id="host:42", queues=(), limit=5, lease_seconds=LEASE)

    job = claimed.job
    assert job.id == queued.id
    assert job.state is JobState.RUNNING
    assert job.attempt == 1
    assert job.worker == "host:42"
    assert job.started_at is not None
    assert job.started_at >= queued.created_at
    assert len(claimed.token) >= 16
    assert await store.get(job.id) == job


async def test_a_claimed_retry_is_the_stored_job_with_its_history(store: SqlJobStore) -> None:
    # The claim returns only the columns a job is made of: everything a second attempt
    # carries (arguments, tags, key, the first attempt's error and progress) must be there.
    submitted = NewJob(task="t", args={"n": [1, 2.5]}, tags=("a", "b"), idempotency_key="k1")
    queued = (await store.enqueue(submitted)).job
    [first] = await claim(store)
    await store.record_progress([ProgressUpdate(queued.id, first.token, Progress(40.0, "half"))])
    failure = ErrorInfo(type="ValueError", message="boom", traceback="tb", attempt=1)
    await store.settle([Settlement(queued.id, first.token, Retrying(failure, delay=0))])
    assert await promoted_count(store) == 1

    [second] = await claim(store)

    job = second.job
    assert (job.attempt, job.errors, job.progress) == (2, (failure,), Progress(40.0, "half"))
    assert (job.args, job.tags, job.idempotency_key) == ({"n": [1, 2.5]}, ("a", "b"), "k1")
    assert await store.get(job.id) == job


async def test_claims_get_distinct_tokens(store: SqlJobStore) -> None:
    await store.enqueue_many([NewJob(task="t"), NewJob(task="t")])

    [first] = await claim(store, limit=1)
    [second] = await claim(store, limit=1)

    assert first.token != second.token


async def test_claim_takes_only_from_the_given_queues(store: SqlJobStore) -> None:
    await store.enqueue_many([NewJob(task="t", queue=name) for name in ("a", "b", "c")])

    from_a_and_b = await claim(store, queues=("a", "b"))
    from_any = await claim(store)

    assert sorted(item.job.queue for item in from_a_and_b) == ["a", "b"]
    assert [item.job.queue for item in from_any] == ["c"]


async def test_claim_takes_at_most_the_limit(store: SqlJobStore) -> None:
    await store.enqueue_many([NewJob(task="t") for _ in range(5)])

    assert len(await claim(store, limit=2)) == 2
    assert await claim(store, limit=0) == []
    assert len(await claim(store, limit=10)) == 3


async def test_claim_finds_nothing_when_no_job_is_ready(store: SqlJobStore) -> None:
    assert await claim(store) == []


async def test_a_delayed_job_is_claimed_only_after_it_is_promoted(store: SqlJobStore) -> None:
    delayed = (await store.enqueue(NewJob(task="t", delay=0.2))).job

    assert await claim(store) == []
    await eventually(lambda: promoted_count(store), timeout=10, message="promotion")
    [claimed] = await claim(store)

    assert claimed.job.id == delayed.id


async def test_a_far_future_job_is_neither_promoted_nor_claimed(store: SqlJobStore) -> None:
    await store.enqueue(NewJob(task="t", delay=3600))

    assert (await store.promote_due(limit=10)).promoted == 0
    assert await claim(store) == []


async def test_concurrent_claimers_never_get_the_same_job(database_url: str) -> None:
    stores = [await SqlJobStore.open(database_url) for _ in range(4)]
    try:
        await stores[0].enqueue_many([NewJob(task="t", args={"n": n}) for n in range(200)])

        async def claim_until_empty(store: SqlJobStore, worker: str) -> list[str]:
            taken: list[str] = []
            while batch := await store.claim(
                worker_id=worker, queues=(), limit=7, lease_seconds=LEASE
            ):
                taken.extend(item.job.id for item in batch)
            return taken

        loops = [claim_until_empty(store, f"w{n}") for n, store in enumerate(stores)]
        taken = [job_id for batch in await asyncio.gather(*loops) for job_id in batch]

        assert len(taken) == 200
        assert len(set(taken)) == 200
    finally:
        for store in stores:
            await store.close()


async def test_claim_ids_takes_only_jobs_still_queued_in_the_given_order(
    store: SqlJobStore,
) -> None:
    first, second, third = (item.job for item in await store.enqueue_many([NewJob(task="t")] * 3))
    await store.cancel(second.id)

    claimed = await store.claim_ids(
        worker_id="w1", job_ids=[third.id, second.id, first.id, "missing"], lease_seconds=LEASE
    )
    again = await store.claim_ids(worker_id="w2", job_ids=[first.id], lease_seconds=LEASE)

    assert [item.job.id for item in claimed] == [third.id, first.id]
    assert all(item.job.attempt == 1 and item.job.worker == "w1" for item in claimed)
    assert again == []


async def test_claim_ids_of_nothing_claims_nothing(store: SqlJobStore) -> None:
    assert await store.claim_ids(worker_id="w1", job_ids=[], lease_seconds=LEASE) == []


async def test_a_new_claim_starts_without_the_last_runs_cancel_request(
    store: SqlJobStore,
) -> None:
    job = (await store.enqueue(NewJob(task="t"))).job
    await store.claim(worker_id="w1", queues=(), limit=1, lease_seconds=-1)
    assert (await store.cancel(job.id)).cancel_requested
    await store.rescue_expired(limit=10)  # the request wins over a requeue: cancelled
    await store.retry(job.id)

    [claimed] = await claim(store)

    assert not claimed.job.cancel_requested


async def claim_plans(store: SqlJobStore, queues: tuple[str, ...]) -> list[list[str]]:
    """The lines of the database's plans for the claim statement the store runs."""
    choice = claims.QueueChoice.of(queues)
    values = {"claimant": "w", "lease_seconds": 30.0, "token": "t", "limit": 10}
    values |= {"queues": list(queues), "one_queue": "".join(queues)}
    if store.dialect_name == "sqlite":
        return [await sqlite_plan(store, claims.claim_statement("sqlite", choice), values)]
    return await postgres_plans(store, claims.claim_statement("postgresql", choice), values)


async def postgres_plans(
    store: SqlJobStore, statement: Any, values: dict[str, Any]
) -> list[list[str]]:
    """The plans of `statement` as the store runs it: a prepared statement, which after a
    few runs may be planned once for any parameters (a generic plan). Both must be good."""
    compiled = compiled_for_asyncpg(statement)
    literals = ", ".join(map(sql_literal, compiled.arguments(values)))
    plans = []
    async with store.engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.execute(f"PREPARE probe AS {compiled.sql}")
        for mode in ("force_custom_plan", "force_generic_plan"):
            await raw.execute(f"SET plan_cache_mode = {mode}")
            rows = await raw.fetch(f"EXPLAIN EXECUTE probe({literals})")
            plans.append([str(row[0]).strip() for row in rows])
        await raw.execute("DEALLOCATE probe")
        await raw.execute("RESET plan_cache_mode")
    return plans


def sql_literal(value: Any) -> str:
    if isinstance(value, list):
        # An array literal of no type yet: the statement's parameter type reads it.
        return sql_literal("{" + ",".join(map(_array_element, value)) + "}")
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


async def sqlite_plan(store: SqlJobStore, statement: Any, values: dict[str, Any]) -> list[str]:
    """The plan of `statement` as the store's SQLite writer runs it."""
    sql, arguments = bound_for_sqlite(statement, values)
    async with store.engine.connect() as connection:
        plan = await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, tuple(arguments))
        return [str(row[-1]).strip() for row in plan]


@pytest.mark.parametrize(
    ("queues", "index"),
    [
        pytest.param(("q1",), "ix_conveyor_jobs_ready", id="one-queue"),
        pytest.param((), "ix_conveyor_jobs_ready_all_queues", id="all-queues"),
    ],
)
async def test_claims_read_a_ready_index_in_claim_order_not_the_whole_table(
    store: SqlJobStore, queues: tuple[str, ...], index: str
) -> None:
    # The ready indexes are partial (state = 'queued') and in claim order: neither a backlog
    # of finished jobs nor the number of queued jobs may slow a claim down.
    await store.enqueue_many(
        [NewJob(task="t", queue=f"q{n % 4}", priority=n % 3) for n in range(2000)]
    )
    finished = await claim(store, limit=1000)
    await store.settle([Settlement(c.job.id, c.token, Completed(None)) for c in finished])
    if store.dialect_name == "postgresql":
        async with store.engine.begin() as connection:
            await connection.exec_driver_sql("ANALYZE conveyor_jobs")

    for plan in await claim_plans(store, queues):
        assert any(index in line.split() for line in plan), plan
        if store.dialect_name == "sqlite":
            assert "SCAN conveyor_jobs" not in plan, plan  # SCAN without USING INDEX
            assert not any("TEMP B-TREE" in line for line in plan), plan
        else:
            # The paused queues are read once per claim (a small table); jobs never are.
            assert not any("Seq Scan on conveyor_jobs" in line for line in plan), plan
            assert not any("Sort" in line for line in plan), plan


async def promoted_count(store: SqlJobStore) -> int:
    return (await store.promote_due(limit=10)).promoted


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.postgres
async def test_writes_under_a_lease_read_the_primary_key_not_the_index_of_running_jobs(
    postgres_url: str,
) -> None:
    # After an ANALYZE that saw no running job, the planner read the partial index of
    # running jobs for renewals, settlements and progress, and filtered it by id. That
    # index holds every version of every job that ever ran until a vacuum: in a drain,
    # each settlement read all of them (20-36 s each after 20 000 jobs) until the leases
    # expired under the workers.
    store = await SqlJobStore.open(postgres_url)
    try:
        for _ in range(20):
            await store.enqueue_many([JOB] * 1000)
        async with store.engine.begin() as connection:
            await connection.exec_driver_sql("ANALYZE conveyor_jobs")
        held = await claim(store, limit=50)
        ids = [c.job.id for c in held]
        done = [Settlement(c.job.id, c.token, Completed(None)) for c in held]
        progress = [ProgressUpdate(c.job.id, c.token, Progress(50.0)) for c in held]
        writes = {
            "renew": (
                claims.renew_statement("postgresql"),
                {"job_ids": ids, "claimant": "w1", "lease_seconds": 30.0},
            ),
            "settle": (
                claims.settle_statement("postgresql"),
                claims.settle_parameters("postgresql", done),
            ),
            "progress": (
                claims.progress_statement("postgresql"),
                claims.progress_parameters("postgresql", progress),
            ),
        }

        for name, (statement, values) in writes.items():
            for plan in await postgres_plans(store, statement, values):
                assert any("pk_conveyor_jobs" in line.split() for line in plan), (name, plan)
                assert not any("ix_conveyor_jobs_leases" in line for line in plan), (name, plan)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_claims_by_id_read_the_primary_key_even_before_the_table_is_analyzed(
    postgres_url: str,
) -> None:
    # A backlog just submitted has no statistics yet: the planner then took a ready index
    # for tiny and read all of it to find a few ids.
    store = await SqlJobStore.open(postgres_url)
    try:
        await plans_read_the_primary_key(store)
    finally:
        await store.close()


JOB = NewJob(task="t")


async def plans_read_the_primary_key(store: SqlJobStore) -> None:
    # Large enough that reading the table is no longer the cheapest plan.
    backlog = [item.job.id for _ in range(20) for item in await store.enqueue_many([JOB] * 1000)]
    values = {"claimant": "w", "lease_seconds": 30.0, "token": "t", "limit": 50}
    values["job_ids"] = backlog[-50:]

    plans = await postgres_plans(store, claims.claim_ids_statement("postgresql"), values)

    for plan in plans:
        assert any("pk_conveyor_jobs" in line.split() for line in plan), "\n".join(plan)
        assert not any("ix_conveyor_jobs_ready" in line for line in plan), plan
