"""Statistics and metrics: counts now, and success rate, throughput and wait and run time
percentiles over a recent window, all measured on the database clock."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, update

from conveyor.core.job import ErrorInfo, Job, JobState, NewJob
from conveyor.core.outcome import Completed, Failed, Outcome
from conveyor.ports import Percentiles, Settlement, WorkerInfo
from conveyor.store import stats as stats_module
from conveyor.store.schema import db_now_plus, jobs, workers
from conveyor.store.sql import SqlJobStore

LEASE = 60.0
FAILURE = ErrorInfo(type="ValueError", message="boom", attempt=1)
EXACT = 1e-3  # instants set in one statement differ by exactly what was asked, to rounding


async def finished(
    store: SqlJobStore,
    outcome: Outcome,
    *,
    ended_ago: float,
    ran: float,
    waited: float,
    task: str = "t",
    tenant: str = "default",
) -> Job:
    """A job that waited, ran, and ended `ended_ago` seconds ago by the database clock."""
    await store.enqueue(NewJob(task=task, tenant=tenant))
    [claim] = await store.claim(worker_id="w1", queues=(), limit=1, lease_seconds=LEASE)
    await store.settle([Settlement(claim.job.id, claim.token, outcome)])
    async with store.engine.begin() as connection:
        timed = update(jobs).where(jobs.c.id == claim.job.id)
        await connection.execute(
            timed.values(
                finished_at=db_now_plus(-ended_ago),
                started_at=db_now_plus(-(ended_ago + ran)),
                run_at=db_now_plus(-(ended_ago + ran + waited)),
            )
        )
    return await store.get(claim.job.id, tenant=tenant)


def assert_close(actual: Percentiles, expected: Percentiles) -> None:
    assert actual.count == expected.count
    for field in ("p50", "p95", "p99"):
        assert getattr(actual, field) == pytest.approx(getattr(expected, field), abs=EXACT), field


async def test_stats_of_a_known_set_of_jobs(store: SqlJobStore) -> None:
    done = [
        await finished(store, Completed(None), ended_ago=30 * n, ran=n, waited=n / 2, task="a")
        for n in (1, 2, 3, 4)
    ]
    done.append(await finished(store, Failed(FAILURE), ended_ago=200, ran=10, waited=5, task="b"))
    await finished(store, Completed(None), ended_ago=7200, ran=99, waited=99, task="a")  # too old
    cancelled = (await store.enqueue(NewJob(task="b"))).job
    await store.cancel(cancelled.id)  # finished in the window, but it never ran
    await store.enqueue(NewJob(task="b"))

    stats = await store.stats(window_seconds=900)

    assert stats.window_seconds == 900
    assert stats.by_state == {
        JobState.SCHEDULED: 0,
        JobState.QUEUED: 1,
        JobState.RUNNING: 0,
        JobState.RETRYABLE: 0,
        JobState.COMPLETED: 5,
        JobState.FAILED: 1,
        JobState.CANCELLED: 1,
    }
    assert stats.by_task == {
        "a": {JobState.COMPLETED: 5},
        "b": {JobState.FAILED: 1, JobState.CANCELLED: 1, JobState.QUEUED: 1},
    }
    assert stats.success_rate == pytest.approx(4 / 5)
    # Nearest rank over runs [1, 2, 3, 4, 10] and waits [0.5, 1, 1.5, 2, 5].
    assert_close(stats.run_seconds, Percentiles(count=5, p50=3.0, p95=10.0, p99=10.0))
    assert_close(stats.wait_seconds, Percentiles(count=5, p50=1.5, p95=5.0, p99=5.0))
    assert len(stats.throughput) == 15
    per_minute = {bucket.start: (bucket.completed, bucket.failed) for bucket in stats.throughput}
    expected: dict[object, list[int]] = {start: [0, 0] for start in per_minute}
    for job in done:
        assert job.finished_at is not None
        start = job.finished_at.replace(second=0, microsecond=0)
        expected[start][job.state is JobState.FAILED] += 1
    assert per_minute == {start: tuple(pair) for start, pair in expected.items()}


async def test_an_empty_window_has_no_rates_and_empty_minutes(store: SqlJobStore) -> None:
    await finished(store, Completed(None), ended_ago=3600, ran=1, waited=1)

    stats = await store.stats(window_seconds=300)

    assert stats.success_rate is None
    empty = Percentiles(count=0, p50=None, p95=None, p99=None)
    assert (stats.wait_seconds, stats.run_seconds) == (empty, empty)
    assert [(bucket.completed, bucket.failed) for bucket in stats.throughput] == [(0, 0)] * 5
    starts = [bucket.start for bucket in stats.throughput]
    assert all(start.second == start.microsecond == 0 for start in starts)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps == [timedelta(minutes=1)] * 4
    assert stats.by_state[JobState.COMPLETED] == 1


@pytest.mark.parametrize(("window", "minutes"), [(30, 1), (60, 1), (90, 2), (86400, 1440)])
async def test_throughput_has_one_bucket_per_started_minute_of_the_window(
    store: SqlJobStore, window: float, minutes: int
) -> None:
    job = (await store.enqueue(NewJob(task="t"))).job

    throughput = (await store.stats(window_seconds=window)).throughput

    assert len(throughput) == minutes
    last = throughput[-1].start
    assert last <= job.created_at + timedelta(seconds=5)
    assert job.created_at - timedelta(minutes=1) < last


async def test_stats_count_only_the_tenants_jobs_unless_asked_for_every_tenant(
    store: SqlJobStore,
) -> None:
    await finished(store, Completed(None), ended_ago=10, ran=1, waited=1, tenant="acme")
    await finished(store, Failed(FAILURE), ended_ago=10, ran=3, waited=1, tenant="globex")

    acme = await store.stats(tenant="acme")
    everyone = await store.stats(tenant=None)

    assert (acme.success_rate, acme.run_seconds.count) == (1.0, 1)
    assert acme.by_state[JobState.FAILED] == 0
    assert (everyone.success_rate, everyone.run_seconds.count) == (0.5, 2)
    assert sum(bucket.completed + bucket.failed for bucket in everyone.throughput) == 2
    assert (await store.stats()).success_rate is None  # the default tenant has none


async def test_durations_are_sampled_from_the_most_recently_finished_jobs(
    store: SqlJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stats_module, "SAMPLE_LIMIT", 2)
    for ran, ended_ago in ((100.0, 10), (200.0, 20), (300.0, 30)):
        await finished(store, Completed(None), ended_ago=ended_ago, ran=ran, waited=0)

    stats = await store.stats()

    assert_close(stats.run_seconds, Percentiles(count=2, p50=100.0, p95=200.0, p99=200.0))
    assert stats.success_rate == 1.0  # rates still count every finished job


# metrics ---------------------------------------------------------------------------------


async def test_metrics_show_jobs_ages_and_live_workers_across_tenants(store: SqlJobStore) -> None:
    old = (await store.enqueue(NewJob(task="t", queue="a", tenant="acme"))).job
    await store.enqueue_many(
        [NewJob(task="t", queue="a", tenant="globex"), NewJob(task="t", queue="b", delay=60)]
    )
    for worker_id in ("alive", "silent"):
        await store.register_worker(
            WorkerInfo(id=worker_id, host="h", pid=1, queues=(), concurrency=1)
        )
    async with store.engine.begin() as connection:
        await connection.execute(
            update(jobs).where(jobs.c.id == old.id).values(run_at=db_now_plus(-90.0))
        )
        await connection.execute(
            update(workers)
            .where(workers.c.id == "silent")
            .values(last_heartbeat_at=db_now_plus(-3600.0))
        )
    await store.mark_dead_workers(silent_for_seconds=60)

    metrics = await store.metrics()

    assert metrics.jobs == {("a", JobState.QUEUED): 2, ("b", JobState.SCHEDULED): 1}
    assert set(metrics.oldest_queued_age_seconds) == {"a"}
    assert 90.0 <= metrics.oldest_queued_age_seconds["a"] < 120.0
    assert metrics.workers_alive == 1
    assert metrics.run_time == {}


# plans -----------------------------------------------------------------------------------


async def window_plans(store: SqlJobStore) -> list[list[str]]:
    """The database's plans for the statements `stats` runs over the window."""
    statements: list[tuple[str, Any]] = []

    def record(*arguments: Any) -> None:
        statements.append((arguments[2], arguments[3]))

    event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        await store.stats(tenant="default")
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", record)
    explain = "EXPLAIN QUERY PLAN " if store.dialect_name == "sqlite" else "EXPLAIN "
    plans = []
    async with store.engine.connect() as connection:
        for statement, parameters in statements:
            if "finished_at >=" in statement:
                rows = await connection.exec_driver_sql(explain + statement, parameters)
                plans.append([str(row[-1]).strip() for row in rows])
    return plans


async def test_the_window_is_read_from_the_finished_jobs_index(store: SqlJobStore) -> None:
    # A long history of finished jobs must not make statistics read all of it.
    await store.enqueue_many([NewJob(task="t") for _ in range(2000)])
    claims = await store.claim(worker_id="w1", queues=(), limit=2000, lease_seconds=LEASE)
    await store.settle([Settlement(c.job.id, c.token, Completed(None)) for c in claims])
    async with store.engine.begin() as connection:
        await connection.execute(update(jobs).values(finished_at=db_now_plus(-3 * 86400.0)))
        if store.dialect_name == "postgresql":
            await connection.exec_driver_sql("ANALYZE conveyor_jobs")
    await finished(store, Completed(None), ended_ago=10, ran=1, waited=1)

    plans = await window_plans(store)

    assert len(plans) == 2
    for plan in plans:
        assert any("ix_conveyor_jobs_finished" in line.split() for line in plan), plan
        assert not any("Seq Scan on conveyor_jobs" in line for line in plan), plan
        assert "SCAN conveyor_jobs" not in plan, plan
