"""Reading jobs back: one job, filtered pages of jobs, counts; never another tenant's."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.core.errors import InvalidSubmission, JobNotFound
from conveyor.core.job import Job, JobState, NewJob
from conveyor.ports import JobFilter
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
