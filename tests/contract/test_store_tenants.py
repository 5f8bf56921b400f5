"""Tenants: a tenant reaches only its own jobs (another's look missing), and `tenant=None`,
which only admin callers pass, reaches every tenant's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from conveyor.core.errors import JobNotFound
from conveyor.core.job import ErrorInfo, Job, JobState, NewJob
from conveyor.core.outcome import Failed
from conveyor.ports import JobFilter, Settlement
from conveyor.store.sql import SqlJobStore

MISSING = "018f0000-0000-7000-8000-000000000000"


async def failed_job(store: SqlJobStore, tenant: str) -> Job:
    job = (await store.enqueue(NewJob(task="t", tenant=tenant))).job
    [claim] = await store.claim(worker_id="w1", queues=(), limit=1, lease_seconds=60)
    error = ErrorInfo(type="E", message="m", attempt=1)
    await store.settle([Settlement(claim.job.id, claim.token, Failed(error))])
    return await store.get(job.id, tenant=tenant)


Action = Callable[[SqlJobStore, str, str | None], Awaitable[Any]]


async def get(store: SqlJobStore, job_id: str, tenant: str | None) -> Any:
    return await store.get(job_id, tenant=tenant)


async def cancel(store: SqlJobStore, job_id: str, tenant: str | None) -> Any:
    return await store.cancel(job_id, tenant=tenant)


async def retry(store: SqlJobStore, job_id: str, tenant: str | None) -> Any:
    return await store.retry(job_id, tenant=tenant)


async def delete(store: SqlJobStore, job_id: str, tenant: str | None) -> Any:
    return await store.delete(job_id, tenant=tenant)


ACTIONS = [
    pytest.param(get, False, id="get"),
    pytest.param(cancel, False, id="cancel"),
    pytest.param(retry, True, id="retry"),
    pytest.param(delete, True, id="delete"),
]


async def subject(store: SqlJobStore, needs_terminal: bool) -> Job:
    if needs_terminal:
        return await failed_job(store, "globex")
    return (await store.enqueue(NewJob(task="t", tenant="globex", delay=3600))).job


@pytest.mark.parametrize(("action", "needs_terminal"), ACTIONS)
async def test_another_tenants_job_is_missing_and_left_alone(
    store: SqlJobStore, action: Action, needs_terminal: bool
) -> None:
    theirs = await subject(store, needs_terminal)

    with pytest.raises(JobNotFound) as foreign:
        await action(store, theirs.id, "acme")
    with pytest.raises(JobNotFound) as missing:
        await action(store, MISSING, "acme")

    assert str(foreign.value) == str(missing.value).replace(MISSING, theirs.id)
    assert await store.get(theirs.id, tenant="globex") == theirs


@pytest.mark.parametrize(("action", "needs_terminal"), ACTIONS)
async def test_every_tenant_reaches_any_tenants_job(
    store: SqlJobStore, action: Action, needs_terminal: bool
) -> None:
    theirs = await subject(store, needs_terminal)

    await action(store, theirs.id, None)

    with pytest.raises(JobNotFound):
        await action(store, MISSING, None)


async def test_every_tenant_sees_and_changes_all_jobs(store: SqlJobStore) -> None:
    acme = (await store.enqueue(NewJob(task="t", tenant="acme", delay=3600))).job
    globex = await failed_job(store, "globex")

    assert (await store.cancel(acme.id, tenant=None)).state is JobState.CANCELLED
    assert (await store.retry(globex.id, tenant=None)).state is JobState.QUEUED
    await store.delete(acme.id, tenant=None)

    page = await store.list_jobs(JobFilter(tenant=None))
    assert [job.id for job in page.items] == [globex.id]
    counts = await store.counts(tenant=None)
    assert counts.by_state == {JobState.QUEUED: 1}
    assert (await store.counts(tenant="acme")).by_state == {}


async def test_every_tenant_lists_jobs_of_all_tenants_newest_first(store: SqlJobStore) -> None:
    created = [
        (await store.enqueue(NewJob(task="t", tenant=tenant))).job
        for tenant in ("acme", "globex", "default")
    ]

    everyone = await store.list_jobs(JobFilter(tenant=None), limit=2)
    rest = await store.list_jobs(JobFilter(tenant=None), limit=2, cursor=everyone.next_cursor)
    acme = await store.list_jobs(JobFilter(tenant="acme"))

    assert [job.id for job in [*everyone.items, *rest.items]] == [j.id for j in created[::-1]]
    assert [job.id for job in acme.items] == [created[0].id]
