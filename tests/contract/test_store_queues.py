"""Queues: a paused queue's jobs are not claimed until it resumes, and each queue shows its
jobs by state, whether it is paused and how long its oldest ready job has waited."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from conveyor.core.job import JobState, NewJob
from conveyor.core.outcome import Completed
from conveyor.ports import Claim, QueueInfo, Settlement, TaskInfo
from conveyor.store.schema import db_now_plus, jobs
from conveyor.store.sql import SqlJobStore

LEASE = 60.0


async def claim(store: SqlJobStore, queues: tuple[str, ...] = ()) -> list[Claim]:
    return await store.claim(worker_id="w1", queues=queues, limit=10, lease_seconds=LEASE)


async def queue_named(store: SqlJobStore, name: str, tenant: str | None = "default") -> QueueInfo:
    [info] = [info for info in await store.list_queues(tenant=tenant) if info.name == name]
    return info


def counts(**states: int) -> dict[JobState, int]:
    every = dict.fromkeys(JobState, 0)
    every.update({JobState(state): number for state, number in states.items()})
    return every


# pausing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("named", [("paused", "open"), ()], ids=["named-queues", "any-queue"])
async def test_claims_skip_a_paused_queue(store: SqlJobStore, named: tuple[str, ...]) -> None:
    await store.enqueue_many(
        [NewJob(task="t", queue="paused", priority=9), NewJob(task="t", queue="open")]
    )

    await store.pause_queue("paused")

    assert [item.job.queue for item in await claim(store, named)] == ["open"]
    assert await claim(store, named) == []


async def test_claim_by_id_skips_a_paused_queue(store: SqlJobStore) -> None:
    held = (await store.enqueue(NewJob(task="t", queue="paused"))).job
    free = (await store.enqueue(NewJob(task="t", queue="open"))).job
    await store.pause_queue("paused")

    claims = await store.claim_ids(worker_id="w1", job_ids=[held.id, free.id], lease_seconds=LEASE)

    assert [item.job.id for item in claims] == [free.id]
    assert (await store.get(held.id)).state is JobState.QUEUED


async def test_a_resumed_queue_is_claimed_again(store: SqlJobStore) -> None:
    job = (await store.enqueue(NewJob(task="t", queue="q"))).job
    await store.pause_queue("q")
    assert await claim(store) == []

    await store.resume_queue("q")

    assert [item.job.id for item in await claim(store)] == [job.id]
    by_id = await store.claim_ids(worker_id="w1", job_ids=[job.id], lease_seconds=LEASE)
    assert by_id == []  # already claimed


async def test_a_paused_queue_still_accepts_jobs_and_lets_running_ones_finish(
    store: SqlJobStore,
) -> None:
    await store.enqueue(NewJob(task="t", queue="q"))
    [running] = await claim(store)

    await store.pause_queue("q")
    accepted = (await store.enqueue(NewJob(task="t", queue="q"))).job
    settled = await store.settle([Settlement(running.job.id, running.token, Completed(1))])

    assert accepted.state is JobState.QUEUED
    assert settled == {running.job.id}
    assert (await queue_named(store, "q")).counts == counts(queued=1, completed=1)


async def test_pausing_twice_and_resuming_twice_are_harmless(store: SqlJobStore) -> None:
    await store.pause_queue("q")
    await store.pause_queue("q")
    assert (await queue_named(store, "q")).paused

    await store.resume_queue("q")
    await store.resume_queue("q")
    assert not (await queue_named(store, "q")).paused


# listing ---------------------------------------------------------------------------------


async def test_queues_come_from_jobs_registered_tasks_and_pauses_sorted_by_name(
    store: SqlJobStore,
) -> None:
    await store.enqueue_many([NewJob(task="t", queue="emails"), NewJob(task="t", queue="b")])
    await store.register_tasks([TaskInfo(name="reports.csv", queue="reports")])
    await store.pause_queue("maintenance")

    queues = await store.list_queues()

    assert [info.name for info in queues] == ["b", "emails", "maintenance", "reports"]
    assert [info.paused for info in queues] == [False, False, True, False]
    assert queues[2].counts == counts()
    assert queues[2].oldest_queued_age_seconds is None


async def test_a_queue_counts_its_jobs_in_every_state(store: SqlJobStore) -> None:
    await store.enqueue_many(
        [
            NewJob(task="t", queue="q"),
            NewJob(task="t", queue="q"),
            NewJob(task="t", queue="q", delay=3600),
            NewJob(task="t", queue="other"),
        ]
    )
    [first, _] = await claim(store, ("q",))
    await store.settle([Settlement(first.job.id, first.token, Completed(None))])

    info = await queue_named(store, "q")

    assert info.counts == counts(running=1, completed=1, scheduled=1)
    assert info.oldest_queued_age_seconds is None  # nothing is ready to run
    assert (await queue_named(store, "other")).counts == counts(queued=1)


async def test_the_oldest_queued_job_gives_the_queue_its_age(store: SqlJobStore) -> None:
    old = (await store.enqueue(NewJob(task="t", queue="q"))).job
    await store.enqueue(NewJob(task="t", queue="q"))
    async with store.engine.begin() as connection:
        rewind = update(jobs).where(jobs.c.id == old.id).values(run_at=db_now_plus(-120.0))
        await connection.execute(rewind)

    age = (await queue_named(store, "q")).oldest_queued_age_seconds

    assert age is not None
    assert 120.0 <= age < 150.0


async def test_queues_show_only_the_tenants_jobs(store: SqlJobStore) -> None:
    await store.enqueue_many(
        [
            NewJob(task="t", queue="shared", tenant="acme"),
            NewJob(task="t", queue="shared", tenant="globex"),
            NewJob(task="t", queue="globex-only", tenant="globex"),
        ]
    )

    acme = await store.list_queues(tenant="acme")
    everyone = await store.list_queues(tenant=None)

    assert [(info.name, info.counts[JobState.QUEUED]) for info in acme] == [("shared", 1)]
    assert [(info.name, info.counts[JobState.QUEUED]) for info in everyone] == [
        ("globex-only", 1),
        ("shared", 2),
    ]
    assert await store.list_queues() == []  # the default tenant has no jobs
