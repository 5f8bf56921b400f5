"""A user cancels a running job: the worker stops its run and the job ends `cancelled`."""

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
    wait_for_flag,
)
from tests.waiting import wait_for_state

pytestmark = ON_EVERY_BROKER

registry = TaskRegistry()


@registry.task(name="wait_async")
async def wait_async(started: str, interrupted: str) -> str:
    flag(started).set()
    try:
        await asyncio.sleep(WAIT)
    except asyncio.CancelledError:
        flag(interrupted).set()
        raise
    return "ran to the end"


@registry.task(name="quick")
async def quick() -> str:
    return "done"


@registry.task(name="wait_plain")
def wait_plain(started: str, interrupted: str, ctx: JobContext) -> str:
    flag(started).set()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if ctx.cancelled:
            flag(interrupted).set()
            return "stopped early"
        time.sleep(0.01)
    return "ran to the end"


async def cancel_while_running(store: SqlJobStore, task: str) -> tuple[str, str]:
    started, interrupted = new_flag(), new_flag()
    job = (
        await store.enqueue(
            NewJob(task=task, args={"started": started, "interrupted": interrupted})
        )
    ).job
    await wait_for_flag(started)
    running = await store.cancel(job.id)
    assert (running.state, running.cancel_requested) == (JobState.RUNNING, True)
    return job.id, interrupted


async def test_an_async_handler_is_cancelled_and_the_job_ends_cancelled(
    deployment: Deployment, store: SqlJobStore
) -> None:
    async with running_worker(deployment, registry) as running:
        job_id, interrupted = await cancel_while_running(store, "wait_async")
        cancelled = await wait_for_state(store, job_id, JobState.CANCELLED)

        assert flag(interrupted).is_set()  # the handler got CancelledError
        assert job_id not in running.worker.active_jobs
    assert (cancelled.attempt, cancelled.errors, cancelled.result) == (1, (), None)
    assert cancelled.finished_at is not None


async def test_a_plain_handler_sees_ctx_cancelled_and_the_job_ends_cancelled(
    deployment: Deployment, store: SqlJobStore
) -> None:
    async with running_worker(deployment, registry):
        job_id, interrupted = await cancel_while_running(store, "wait_plain")
        cancelled = await wait_for_state(store, job_id, JobState.CANCELLED)
        await wait_for_flag(interrupted)  # the thread noticed, and returned on its own

    assert (cancelled.errors, cancelled.result) == ((), None)


async def test_a_cancelled_run_frees_its_slot_for_the_next_job(
    deployment: Deployment, store: SqlJobStore
) -> None:
    async with running_worker(deployment, registry, concurrency=1):
        job_id, _ = await cancel_while_running(store, "wait_async")
        await wait_for_state(store, job_id, JobState.CANCELLED)
        after = (await store.enqueue(NewJob(task="quick"))).job

        done = await wait_for_state(store, after.id, JobState.COMPLETED)

    assert done.result == "done"
