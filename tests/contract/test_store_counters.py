"""Counters for /metrics: every path that creates or ends an attempt counts it exactly once,
in the transaction that makes the change, and the run time of every settled attempt lands in
its queue's histogram."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import distinct, func, select, update
from sqlalchemy.ext.asyncio import create_async_engine

from conveyor.core.errors import IdempotencyConflict
from conveyor.core.job import ErrorInfo, NewJob
from conveyor.core.outcome import Cancelled, Completed, Failed, Outcome, Released, Retrying
from conveyor.ports import RUN_TIME_BUCKETS, Claim, CounterEvent, Settlement
from conveyor.store.schema import counters, db_now_plus, jobs
from conveyor.store.sql import SqlJobStore

LEASE = 60.0
FAILURE = ErrorInfo(type="ValueError", message="boom", attempt=1)


async def counted(store: SqlJobStore) -> dict[tuple[CounterEvent, str], int]:
    return dict((await store.metrics()).counters)


async def claim_all(store: SqlJobStore, *, lease_seconds: float = LEASE) -> list[Claim]:
    return await store.claim(worker_id="w1", queues=(), limit=100, lease_seconds=lease_seconds)


async def started_seconds_ago(store: SqlJobStore, job_id: str, seconds: float) -> None:
    """Move a running job's start back, as if its attempt had run that long already."""
    async with store.engine.begin() as connection:
        statement = update(jobs).where(jobs.c.id == job_id).values(started_at=db_now_plus(-seconds))
        await connection.execute(statement)


# enqueue ---------------------------------------------------------------------------------


async def test_each_created_job_counts_as_enqueued_in_its_queue(store: SqlJobStore) -> None:
    await store.enqueue(NewJob(task="t", queue="emails"))
    await store.enqueue(NewJob(task="t", queue="emails", delay=3600))
    await store.enqueue_many([NewJob(task="t", queue="emails"), NewJob(task="t", queue="math")])

    assert await counted(store) == {
        (CounterEvent.ENQUEUED, "emails"): 3,
        (CounterEvent.ENQUEUED, "math"): 1,
    }


async def test_idempotent_replays_are_not_counted(store: SqlJobStore) -> None:
    await store.enqueue(NewJob(task="t", idempotency_key="k"))
    await store.enqueue(NewJob(task="t", idempotency_key="k"))
    await store.enqueue_many([NewJob(task="t", idempotency_key="k"), NewJob(task="t")])

    assert await counted(store) == {(CounterEvent.ENQUEUED, "default"): 2}


async def test_a_refused_batch_counts_nothing(store: SqlJobStore) -> None:
    await store.enqueue(NewJob(task="t", idempotency_key="k", fingerprint="a"))

    with pytest.raises(IdempotencyConflict):
        await store.enqueue_many(
            [NewJob(task="t"), NewJob(task="t", idempotency_key="k", fingerprint="b")]
        )

    assert await counted(store) == {(CounterEvent.ENQUEUED, "default"): 1}


async def test_counts_from_many_stores_at_once_add_up(database_url: str) -> None:
    stores = [await SqlJobStore.open(database_url) for _ in range(3)]
    try:
        submissions = [
            store.enqueue_many([NewJob(task="t", queue=queue) for queue in ("a", "b", "a")])
            for store in stores
            for _ in range(10)
        ]
        await asyncio.gather(*submissions)

        assert await counted(stores[0]) == {
            (CounterEvent.ENQUEUED, "a"): 60,
            (CounterEvent.ENQUEUED, "b"): 30,
        }
        # Writers spread over shards, so that they rarely wait on one another's row.
        async with stores[0].engine.connect() as connection:
            shards = select(func.count(distinct(counters.c.shard)))
            assert (await connection.execute(shards)).scalar_one() > 1
    finally:
        for store in stores:
            await store.close()


@pytest.mark.postgres
async def test_enqueue_in_a_callers_transaction_counts_only_if_it_commits(
    postgres_url: str,
) -> None:
    store = await SqlJobStore.open(postgres_url)
    application = create_async_engine(
        postgres_url.replace("postgresql://", "postgresql+asyncpg://")
    )
    try:
        async with application.connect() as connection:
            await store.enqueue(NewJob(task="t", queue="gone"), connection=connection)
            await connection.rollback()
        async with application.begin() as connection:
            await store.enqueue(NewJob(task="t", queue="kept"), connection=connection)

        assert await counted(store) == {(CounterEvent.ENQUEUED, "kept"): 1}
    finally:
        await application.dispose()
        await store.close()


# settle ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "event"),
    [
        (Completed(1), CounterEvent.COMPLETED),
        (Failed(FAILURE), CounterEvent.FAILED),
        (Retrying(FAILURE, 3600), CounterEvent.RETRIED),
        (Cancelled(), CounterEvent.CANCELLED),
    ],
    ids=["completed", "failed", "retried", "cancelled"],
)
async def test_a_settled_attempt_counts_by_the_state_it_reached(
    store: SqlJobStore, outcome: Outcome, event: CounterEvent
) -> None:
    await store.enqueue(NewJob(task="t", queue="q"))
    [claim] = await claim_all(store)

    await store.settle([Settlement(claim.job.id, claim.token, outcome)])

    assert await counted(store) == {(CounterEvent.ENQUEUED, "q"): 1, (event, "q"): 1}


async def test_a_released_attempt_counts_nothing(store: SqlJobStore) -> None:
    await store.enqueue(NewJob(task="t"))
    [claim] = await claim_all(store)

    await store.settle([Settlement(claim.job.id, claim.token, Released())])

    metrics = await store.metrics()
    assert metrics.counters == {(CounterEvent.ENQUEUED, "default"): 1}
    assert metrics.run_time == {}


async def test_a_retry_of_a_job_whose_cancel_was_requested_counts_as_cancelled(
    store: SqlJobStore,
) -> None:
    await store.enqueue(NewJob(task="t"))
    [claim] = await claim_all(store)
    await store.cancel(claim.job.id)  # running: only a request, counted when it stops

    assert await counted(store) == {(CounterEvent.ENQUEUED, "default"): 1}
    await store.settle([Settlement(claim.job.id, claim.token, Retrying(FAILURE, 0))])

    assert (await counted(store))[(CounterEvent.CANCELLED, "default")] == 1
    assert (CounterEvent.RETRIED, "default") not in await counted(store)


async def test_a_batch_of_settlements_counts_each_job_once_per_queue(store: SqlJobStore) -> None:
    await store.enqueue_many([NewJob(task="t", queue=queue) for queue in ("a", "a", "b")])
    claims = await claim_all(store)

    await store.settle([Settlement(c.job.id, c.token, Completed(None)) for c in claims])
    await store.settle([Settlement(c.job.id, c.token, Completed(None)) for c in claims])  # stale

    events = await counted(store)
    assert (events[(CounterEvent.COMPLETED, "a")], events[(CounterEvent.COMPLETED, "b")]) == (2, 1)


# rescue and cancel -----------------------------------------------------------------------


async def test_rescued_jobs_count_as_retried_failed_or_cancelled(store: SqlJobStore) -> None:
    await store.enqueue_many(
        [
            NewJob(task="again", queue="q", max_attempts=2),
            NewJob(task="last", queue="q", max_attempts=1),
            NewJob(task="cancel", queue="q", max_attempts=2),
        ]
    )
    claims = {claim.job.task: claim for claim in await claim_all(store, lease_seconds=-1)}
    await store.cancel(claims["cancel"].job.id)

    await store.rescue_expired(limit=10)

    assert await counted(store) == {
        (CounterEvent.ENQUEUED, "q"): 3,
        (CounterEvent.RETRIED, "q"): 1,
        (CounterEvent.FAILED, "q"): 1,
        (CounterEvent.CANCELLED, "q"): 1,
    }


async def test_cancelling_a_waiting_job_counts_it_once(store: SqlJobStore) -> None:
    job = (await store.enqueue(NewJob(task="t", queue="q", delay=3600))).job

    await store.cancel(job.id)

    assert (await counted(store))[(CounterEvent.CANCELLED, "q")] == 1


# run-time histogram ----------------------------------------------------------------------


def bucket_of(seconds: float) -> int:
    return next(
        (index for index, bound in enumerate(RUN_TIME_BUCKETS) if seconds <= bound),
        len(RUN_TIME_BUCKETS),
    )


async def test_settled_attempts_are_observed_in_their_queues_run_time_histogram(
    store: SqlJobStore,
) -> None:
    await store.enqueue_many(
        [NewJob(task="t", queue="slow"), NewJob(task="t", queue="slow"), NewJob(task="t")]
    )
    claims = await claim_all(store)
    slow = [claim for claim in claims if claim.job.queue == "slow"]
    await started_seconds_ago(store, slow[0].job.id, 3.0)
    await started_seconds_ago(store, slow[1].job.id, 4000.0)
    outcomes: list[Outcome] = [Completed(None), Failed(FAILURE), Retrying(FAILURE, 0)]

    await store.settle(
        [
            Settlement(c.job.id, c.token, outcome)
            for c, outcome in zip(claims, outcomes, strict=True)
        ]
    )

    histograms = (await store.metrics()).run_time
    assert set(histograms) == {"slow", "default"}
    expected = [0] * (len(RUN_TIME_BUCKETS) + 1)
    expected[bucket_of(3.0)] += 1  # 2.5 < 3 s <= 5 s
    expected[len(RUN_TIME_BUCKETS)] += 1  # above the last bound: +Inf
    assert histograms["slow"].bucket_counts == tuple(expected)
    assert histograms["slow"].count == 2
    assert histograms["slow"].total_seconds == pytest.approx(4003.0, abs=5.0)
    default = histograms["default"]
    assert (default.count, sum(default.bucket_counts)) == (1, 1)
    assert default.total_seconds < 60.0


async def test_histograms_accumulate_across_settles(store: SqlJobStore) -> None:
    for _ in range(3):
        await store.enqueue(NewJob(task="t"))
        [claim] = await claim_all(store)
        await started_seconds_ago(store, claim.job.id, 1.5)
        await store.settle([Settlement(claim.job.id, claim.token, Completed(None))])

    histogram = (await store.metrics()).run_time["default"]

    expected = [0] * (len(RUN_TIME_BUCKETS) + 1)
    expected[bucket_of(1.5)] = 3  # 1 s < 1.5 s (and a little more) <= 2.5 s
    assert histogram.bucket_counts == tuple(expected)
    assert histogram.count == 3
    assert histogram.total_seconds == pytest.approx(4.5, abs=2.5)
