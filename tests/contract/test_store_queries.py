"""Reading jobs back: one job, filtered pages of jobs, counts; never another tenant's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from conveyor.core.errors import InvalidSubmission, JobNotFound
from conveyor.core.job import Job, JobState, NewJob
from conveyor.core.outcome import Completed
from conveyor.ports import JobFilter, Settlement
from conveyor.store.queries import filter_conditions, newest_first
from conveyor.store.sql import SqlJobStore


async def enqueue_all(store: SqlJobStore, jobs: list[NewJob]) -> list[Job]:
    return [result.job for result in await store.enqueue_many(jobs)]


async def listed_ids(store: SqlJobStore, job_filter: JobFilter) -> list[str]:
    return [job.id for job in (await store.list_jobs(job_filter, limit=500)).items]


async def test_get_of_an_unknown_id_raises_job_not_found(store: SqlJobStore) -> None:
    with pytest.raises(JobNotFound):
        await store.get("018f0000-0000-7000-8000-000000000000")


async def test_another_tenants_job_is_not_found(store: SqlJobStore) -> None:
    theirs = (await store.enqueue(NewJob(task="t", tenant="globex"))).job

    with pytest.raises(JobNotFound):
        await store.get(theirs.id, tenant="acme")
    assert (await store.get(theirs.id, tenant="globex")).id == theirs.id
    assert await listed_ids(store, JobFilter(tenant="acme")) == []


async def test_pages_visit_every_job_once_newest_first(store: SqlJobStore) -> None:
    jobs = await enqueue_all(store, [NewJob(task="t") for _ in range(23)])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0

    while True:
        page = await store.list_jobs(JobFilter(), limit=5, cursor=cursor)
        seen.extend(job.id for job in page.items)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert seen == [job.id for job in reversed(jobs)]
    assert pages == 5


async def test_pages_across_states_and_tenants_visit_every_job_once_newest_first(
    store: SqlJobStore,
) -> None:
    # A tenant's listing reads each state on its own and merges them: a page must still
    # be the newest jobs whatever their states, and the next page go on from there.
    ours = await enqueue_all(
        store, [NewJob(task="t", delay=60 if n % 3 == 0 else None) for n in range(30)]
    )
    theirs = await enqueue_all(store, [NewJob(task="t", tenant="globex") for _ in range(5)])
    claimed = await store.claim(worker_id="w", queues=(), limit=8, lease_seconds=30)
    await store.settle([Settlement(c.job.id, c.token, Completed(None)) for c in claimed[:4]])
    await store.cancel(ours[-1].id)

    assert await all_pages(store, JobFilter(), limit=4) == [job.id for job in reversed(ours)]
    everyone = sorted([job.id for job in ours + theirs], reverse=True)
    assert await all_pages(store, JobFilter(tenant=None), limit=6) == everyone
    waiting = [
        job.id
        for job in reversed(ours)
        if (await store.get(job.id)).state in (JobState.QUEUED, JobState.SCHEDULED)
    ]
    waiting_states = [JobState.QUEUED, JobState.SCHEDULED]
    assert await all_pages(store, JobFilter(states=waiting_states), limit=3) == waiting
    assert await all_pages(store, JobFilter(tenant="globex"), limit=2) == [
        job.id for job in reversed(theirs)
    ]


async def all_pages(store: SqlJobStore, job_filter: JobFilter, *, limit: int) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        page = await store.list_jobs(job_filter, limit=limit, cursor=cursor)
        seen.extend(job.id for job in page.items)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor
    raise AssertionError("the pages never ended")


@pytest.mark.postgres
async def test_a_page_of_a_tenants_jobs_reads_a_bounded_number_of_rows(postgres_url: str) -> None:
    # No index (tenant, id): each state's range of (tenant, state, id) is read newest
    # first and cut at the page, so the rows read stay bounded by the page size.
    store = await SqlJobStore.open(postgres_url)
    try:
        await store.enqueue_many([NewJob(task="t") for _ in range(3000)])
        await store.enqueue_many([NewJob(task="t", delay=600) for _ in range(1000)])
        done = await store.claim(worker_id="w", queues=(), limit=1000, lease_seconds=30)
        await store.settle([Settlement(c.job.id, c.token, Completed(None)) for c in done])
        async with store.engine.begin() as connection:
            await connection.exec_driver_sql("ANALYZE conveyor_jobs")
        for job_filter in (JobFilter(), JobFilter(states=[JobState.QUEUED, JobState.COMPLETED])):
            scans = await _scans_of_a_page(store, job_filter, page=20)

            assert scans
            assert {node["Node Type"] for node in scans} == {"Index Scan"}, scans
            assert sum(node["Actual Rows"] for node in scans) <= len(JobState) * 21
    finally:
        await store.close()


async def _scans_of_a_page(
    store: SqlJobStore, job_filter: JobFilter, *, page: int
) -> list[dict[str, Any]]:
    query = newest_first(filter_conditions("postgresql", job_filter), job_filter, page + 1)
    literal = {"literal_binds": True}
    sql = str(query.compile(dialect=store.engine.dialect, compile_kwargs=literal))
    async with store.engine.connect() as connection:
        result = await connection.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
        value = result.scalar_one()
    plan = json.loads(value) if isinstance(value, str) else value
    return list(_scans(plan[0]["Plan"]))


def _scans(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "Scan" in node["Node Type"]:
        yield node
    for child in node.get("Plans", ()):
        yield from _scans(child)


async def test_a_page_that_ends_exactly_at_the_last_job_has_no_next_cursor(
    store: SqlJobStore,
) -> None:
    await enqueue_all(store, [NewJob(task="t") for _ in range(4)])

    page = await store.list_jobs(JobFilter(), limit=4)

    assert len(page.items) == 4
    assert page.next_cursor is None


async def test_a_cursor_that_was_not_issued_is_rejected(store: SqlJobStore) -> None:
    with pytest.raises(InvalidSubmission, match="cursor"):
        await store.list_jobs(JobFilter(), cursor="not a cursor!")


async def test_list_filters_by_state_task_and_queue(store: SqlJobStore) -> None:
    email, report, other = await enqueue_all(
        store,
        [
            NewJob(task="send", queue="emails"),
            NewJob(task="report", queue="reports"),
            NewJob(task="send", queue="reports", delay=60),
        ],
    )

    assert await listed_ids(store, JobFilter(states=[JobState.QUEUED])) == [report.id, email.id]
    assert await listed_ids(store, JobFilter(states=[JobState.SCHEDULED])) == [other.id]
    assert await listed_ids(store, JobFilter(task="send")) == [other.id, email.id]
    assert await listed_ids(store, JobFilter(queue="reports")) == [other.id, report.id]
    assert await listed_ids(store, JobFilter(task="send", queue="emails")) == [email.id]


async def test_list_filters_by_tag(store: SqlJobStore) -> None:
    tagged, _, both = await enqueue_all(
        store,
        [
            NewJob(task="t", tags=("vip",)),
            NewJob(task="t", tags=("vipx", "v")),
            NewJob(task="t", tags=("eu", "vip")),
        ],
    )

    assert await listed_ids(store, JobFilter(tag="vip")) == [both.id, tagged.id]
    assert await listed_ids(store, JobFilter(tag="nobody")) == []


async def test_list_filters_by_creation_time(store: SqlJobStore) -> None:
    jobs = await enqueue_all(store, [NewJob(task="t") for _ in range(3)])
    first = min(job.created_at for job in jobs)
    last = max(job.created_at for job in jobs)
    second = timedelta(seconds=1)
    everything = [job.id for job in reversed(jobs)]

    assert await listed_ids(store, JobFilter(created_after=first - second)) == everything
    assert await listed_ids(store, JobFilter(created_after=last)) == []
    assert await listed_ids(store, JobFilter(created_before=first)) == []
    assert await listed_ids(store, JobFilter(created_before=last + second)) == everything


async def test_counts_group_by_state_queue_and_task(store: SqlJobStore) -> None:
    await enqueue_all(
        store,
        [
            NewJob(task="send", queue="emails"),
            NewJob(task="send", queue="emails"),
            NewJob(task="report", queue="reports", delay=60),
            NewJob(task="send", queue="emails", tenant="globex"),
        ],
    )

    counts = await store.counts()

    assert counts.by_state == {JobState.QUEUED: 2, JobState.SCHEDULED: 1}
    assert counts.by_queue == {
        "emails": {JobState.QUEUED: 2},
        "reports": {JobState.SCHEDULED: 1},
    }
    assert counts.by_task == {"send": {JobState.QUEUED: 2}, "report": {JobState.SCHEDULED: 1}}


async def test_an_instant_read_from_the_store_compares_equal_when_passed_back(
    store: SqlJobStore,
) -> None:
    jobs = await enqueue_all(store, [NewJob(task="t", delay=n / 7) for n in range(1, 30)])
    jobs += [(await store.enqueue(NewJob(task="t"))).job for _ in range(10)]

    for job in jobs:
        assert job.id not in await listed_ids(store, JobFilter(created_after=job.created_at))
        assert job.id not in await listed_ids(store, JobFilter(created_before=job.created_at))
