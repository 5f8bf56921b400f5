"""Stopping a worker in two phases: running jobs may finish within the grace period; what
still runs after it goes back to the queue with its attempt given back."""

from __future__ import annotations

import asyncio
import time

from conveyor.core.job import JobState, NewJob
from conveyor.runtime.context import JobContext
from conveyor.runtime.registry import TaskRegistry
from conveyor.store.sql import SqlJobStore
from tests.backends import ON_EVERY_BROKER, Deployment
from tests.contract.worker_harness import (
    WAIT,
    flag,
    new_flag,
    running_worker,
    until_flag,
    wait_for_flag,
)
from tests.waiting import wait_for_state

pytestmark = ON_EVERY_BROKER

registry = TaskRegistry()


@registry.task(name="hold")
async def hold(started: str, release: str, interrupted: str) -> str:
    flag(started).set()
    try:
        await until_flag(release)
    except asyncio.CancelledError:
        flag(interrupted).set()
        raise
    return "finished"


@registry.task(name="hold_plain")
def hold_plain(started: str, interrupted: str, ctx: JobContext) -> str:
    flag(started).set()
    if ctx.wait_cancelled(WAIT):
        flag(interrupted).set()
    return "finished"


def hold_args() -> dict[str, str]:
    return {"started": new_flag(), "release": new_flag(), "interrupted": new_flag()}


async def test_a_graceful_stop_lets_the_running_job_finish_and_claims_nothing_new(
    deployment: Deployment, store: SqlJobStore
) -> None:
    args = hold_args()
    async with running_worker(deployment, registry, shutdown_grace_seconds=WAIT) as running:
        job = (await store.enqueue(NewJob(task="hold", args=args))).job
        await wait_for_flag(args["started"])

        running.worker.request_stop()
        later = (await store.enqueue(NewJob(task="hold", args=hold_args()))).job
        await wait_for_state(store, job.id, JobState.RUNNING)
        assert not running.task.done()  # it waits for the job, which still runs
        flag(args["release"]).set()
        await running.stopped()

    done = await store.get(job.id)
    assert (done.state, done.result, done.attempt) == (JobState.COMPLETED, "finished", 1)
    assert (await store.get(later.id)).state is JobState.QUEUED
    assert await store.list_workers(include_dead=True) == []


async def test_a_job_still_running_after_the_grace_goes_back_to_the_queue(
    deployment: Deployment, store: SqlJobStore
) -> None:
    args = hold_args()
    async with running_worker(deployment, registry, shutdown_grace_seconds=0.5) as running:
        job = (await store.enqueue(NewJob(task="hold", args=args, max_attempts=3))).job
        await wait_for_flag(args["started"])

        running.worker.request_stop()
        await running.stopped()

    assert flag(args["interrupted"]).is_set()
    released = await store.get(job.id)
    # A shutdown is not the job's fault: the attempt is given back, no error recorded.
    assert (released.state, released.attempt, released.errors) == (JobState.QUEUED, 0, ())


async def test_a_plain_function_past_the_grace_is_told_to_stop_and_released(
    deployment: Deployment, store: SqlJobStore
) -> None:
    args = {"started": new_flag(), "interrupted": new_flag()}
    async with running_worker(deployment, registry, shutdown_grace_seconds=0.5) as running:
        job = (await store.enqueue(NewJob(task="hold_plain", args=args))).job
        await wait_for_flag(args["started"])

        running.worker.request_stop()
        await running.stopped()

    await wait_for_flag(args["interrupted"])
    released = await store.get(job.id)
    assert (released.state, released.attempt) == (JobState.QUEUED, 0)


async def test_a_second_stop_request_does_not_wait_for_the_grace(
    deployment: Deployment, store: SqlJobStore
) -> None:
    args = hold_args()
    async with running_worker(deployment, registry, shutdown_grace_seconds=600) as running:
        job = (await store.enqueue(NewJob(task="hold", args=args))).job
        await wait_for_flag(args["started"])

        began = time.monotonic()
        running.worker.request_stop()
        running.worker.request_stop()
        await running.stopped()

    assert time.monotonic() - began < WAIT  # far less than the 600 s grace
    released = await store.get(job.id)
    assert (released.state, released.attempt) == (JobState.QUEUED, 0)
    assert await store.list_workers(include_dead=True) == []


async def test_a_worker_with_nothing_running_stops_at_once(
    deployment: Deployment, store: SqlJobStore
) -> None:
    async with running_worker(deployment, registry, shutdown_grace_seconds=600) as running:
        running.worker.request_stop()
        await running.stopped()

    assert await store.list_workers(include_dead=True) == []
