"""Through the facade on PostgreSQL + Redis, cancels and progress travel over pub/sub: a
worker stops a cancelled job long before its next heartbeat, and `watch` shows progress
long before the worker writes it to the store.

Heartbeats and progress writes are set minutes apart here, so that only a notice can have
brought the news within the tests' deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from conveyor import Conveyor, JobContext, JobState
from conveyor.core.job import Job, NewJob, Progress
from conveyor.runtime.registry import TaskRegistry
from conveyor.store.sql import SqlJobStore
from tests.backends import Deployment
from tests.contract.test_client import settings_of, start_worker, stop_worker
from tests.contract.worker_harness import flag, new_flag, running_worker, until_flag
from tests.waiting import eventually, wait_for_state

pytestmark = pytest.mark.parametrize(
    "backend_name",
    [pytest.param("postgres+redis", id="postgres+redis", marks=pytest.mark.postgres)],
)

DEADLINE = 10.0  # what the tests allow; heartbeats and progress writes are far apart
MINUTES = 300.0

registry = TaskRegistry()


@registry.task(name="reports_when_told")
async def reports_when_told(go: str, done: str, ctx: JobContext) -> str:
    await until_flag(go)
    ctx.progress(40, "rendering")
    await until_flag(done)
    return "finished"


@pytest.fixture
async def app(deployment: Deployment) -> AsyncIterator[Conveyor]:
    application = Conveyor(
        settings_of(
            deployment,
            lease_seconds=2 * MINUTES,
            heartbeat_seconds=MINUTES,
            poll_interval_seconds=0.1,
            monitor_interval_seconds=0.5,
        )
    )

    @application.task(name="waits_to_be_cancelled")
    async def waits_to_be_cancelled(started: str) -> str:
        flag(started).set()
        await asyncio.sleep(2 * MINUTES)
        return "ran to the end"

    yield application
    await application.close()


async def test_a_running_job_is_cancelled_long_before_the_next_heartbeat(app: Conveyor) -> None:
    worker, running = await start_worker(app)
    try:
        started = new_flag()
        job = await app.enqueue("waits_to_be_cancelled", {"started": started})
        await wait_for_state(app, job.id, JobState.RUNNING, timeout=DEADLINE)
        await until_started(started)

        asked = await app.cancel(job.id)
        cancelled = await wait_for_state(app, job.id, JobState.CANCELLED, timeout=DEADLINE)
    finally:
        await stop_worker(worker, running)

    assert (asked.state, asked.cancel_requested) == (JobState.RUNNING, True)
    assert cancelled.attempt == 1


async def test_watch_shows_progress_before_the_store_has_it(
    app: Conveyor, deployment: Deployment, store: SqlJobStore
) -> None:
    go, done = new_flag(), new_flag()
    job = (await store.enqueue(NewJob(task="reports_when_told", args={"go": go, "done": done}))).job
    reported = Progress(40.0, "rendering")

    async with (
        running_worker(deployment, registry, progress_interval_seconds=MINUTES),
        contextlib.aclosing(app.watch(job.id)) as watching,
    ):
        seen = await until_seen(watching, lambda current: current.state is JobState.RUNNING)
        flag(go).set()  # the watch is subscribed: now the handler reports
        shown = await until_seen(watching, lambda current: current.progress == reported)
        stored = await store.get(job.id)
        flag(done).set()

    assert seen.progress is None
    assert (shown.state, shown.attempt) == (JobState.RUNNING, 1)
    assert (stored.state, stored.progress) == (JobState.RUNNING, None)  # not written yet


async def until_started(name: str) -> None:
    async with asyncio.timeout(DEADLINE):
        await until_flag(name)


async def until_seen(watching: AsyncIterator[Job], wanted: Callable[[Job], bool]) -> Job:
    async with asyncio.timeout(DEADLINE):
        async for current in watching:
            if wanted(current):
                return current
    raise AssertionError("the watch ended first")


async def test_watch_shows_noticed_progress_once_when_the_store_catches_up(
    app: Conveyor, deployment: Deployment, store: SqlJobStore
) -> None:
    go, done = new_flag(), new_flag()
    job = (await store.enqueue(NewJob(task="reports_when_told", args={"go": go, "done": done}))).job
    reported = Progress(40.0, "rendering")
    shown: list[Job] = []
    running, reported_shown = asyncio.Event(), asyncio.Event()

    async def follow() -> None:  # as an event stream does: every change, as it comes
        async for current in app.watch(job.id, interval=0.1):
            shown.append(current)
            if current.state is JobState.RUNNING:
                running.set()
            if current.progress == reported:
                reported_shown.set()

    async def stored_progress() -> Progress | None:
        return (await store.get(job.id)).progress

    # The store gets progress up to a second after the notice, and the watch reads it ten
    # times a second meanwhile: it must neither step back to "no progress" nor repeat it.
    async with running_worker(deployment, registry, progress_interval_seconds=1.0):
        following = asyncio.create_task(follow())
        async with asyncio.timeout(DEADLINE):
            await running.wait()
            flag(go).set()
            await reported_shown.wait()
        await eventually(stored_progress, timeout=DEADLINE, message="progress in the store")
        flag(done).set()
        await asyncio.wait_for(following, DEADLINE)

    assert [(current.state, current.progress) for current in shown] == [
        (JobState.RUNNING, None),
        (JobState.RUNNING, reported),
        (JobState.COMPLETED, reported),
    ]
