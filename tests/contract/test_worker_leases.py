"""Leases: heartbeats renew them from outside the handler, and a worker that lost one
never overwrites the result of the worker that took the job over (DESIGN §1.3, §1.7)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from conveyor.core.job import JobState, NewJob
from conveyor.core.outcome import Completed
from conveyor.ports import Settlement
from conveyor.runtime.context import JobContext
from conveyor.runtime.registry import TaskRegistry
from conveyor.store.sql import SqlJobStore
from tests.backends import ON_EVERY_BROKER, Deployment
from tests.contract.worker_harness import (
    FAST,
    flag,
    monitor_in_thread,
    new_flag,
    running_worker,
    steal,
    until_flag,
    wait_for_flag,
    wait_until_released,
)
from tests.waiting import wait_for_state

BLOCK_SECONDS = 3 * FAST.lease_seconds

pytestmark = ON_EVERY_BROKER

registry = TaskRegistry()
runs: dict[str, int] = {}
runs_lock = threading.Lock()


@registry.task(name="block_event_loop")
async def block_event_loop(name: str) -> str:
    with runs_lock:
        runs[name] = runs.get(name, 0) + 1
    time.sleep(BLOCK_SECONDS)
    return "survived"


@registry.task(name="block_handler_loop")
async def block_handler_loop(started: str, finished: str) -> str:
    flag(started).set()
    time.sleep(BLOCK_SECONDS)
    flag(finished).set()
    return "survived"


@registry.task(name="quick")
def quick() -> str:  # a plain function: the blocked handler loop cannot delay it
    return "quick"


@registry.task(name="hold")
async def hold(started: str, release: str, interrupted: str) -> str:
    flag(started).set()
    try:
        await until_flag(release)
    except BaseException:
        flag(interrupted).set()
        raise
    return "stale result"


@registry.task(name="hold_attempt")
async def hold_attempt(release: str, interrupted: str, ctx: JobContext) -> int:
    try:
        await until_flag(release)
    except asyncio.CancelledError:
        flag(f"{interrupted}-{ctx.attempt}").set()
        raise
    return ctx.attempt


async def test_a_handler_blocking_the_event_loop_past_its_lease_is_not_rescued(
    deployment: Deployment, store: SqlJobStore
) -> None:
    name = new_flag()
    with monitor_in_thread(deployment):
        async with running_worker(deployment, registry, with_monitor=False):
            job = (await store.enqueue(NewJob(task="block_event_loop", args={"name": name}))).job
            done = await wait_for_state(store, job.id, JobState.COMPLETED)

    assert (done.result, done.attempt, done.errors) == ("survived", 1, ())
    assert runs[name] == 1


async def test_the_worker_claims_and_settles_while_an_async_handler_blocks_its_loop(
    deployment: Deployment, store: SqlJobStore
) -> None:
    # When async handlers shared the worker's loop, nothing was claimed or settled while
    # one blocked it, and a write in flight kept SQLite locked, so no lease was renewed.
    started, finished = new_flag(), new_flag()
    async with running_worker(deployment, registry, concurrency=2):  # its monitor is on
        args = {"started": started, "finished": finished}
        slow = (await store.enqueue(NewJob(task="block_handler_loop", args=args))).job
        await wait_for_flag(started)
        fast = (await store.enqueue(NewJob(task="quick"))).job
        fast_done = await wait_for_state(store, fast.id, JobState.COMPLETED)
        assert not flag(finished).is_set()  # done while the first handler still blocks
        slow_done = await wait_for_state(store, slow.id, JobState.COMPLETED)

    assert fast_done.result == "quick"
    assert (slow_done.result, slow_done.attempt, slow_done.errors) == ("survived", 1, ())


async def hold_and_steal(store: SqlJobStore) -> tuple[str, dict[str, str]]:
    flags = {"started": new_flag(), "release": new_flag(), "interrupted": new_flag()}
    job = (await store.enqueue(NewJob(task="hold", args=flags))).job
    await wait_for_flag(flags["started"])
    await steal(store, job.id)
    [taken] = await store.claim(worker_id="thief", queues=(), limit=1, lease_seconds=60)
    assert taken.job.id == job.id
    await store.settle([Settlement(job.id, taken.token, Completed("thief's result"))])
    return job.id, flags


async def test_a_lost_lease_stops_the_run_and_the_new_owners_result_stands(
    deployment: Deployment, store: SqlJobStore
) -> None:
    # One slot, held by the job: the worker cannot claim the rescued job back itself.
    async with running_worker(deployment, registry, concurrency=1) as running:
        job_id, flags = await hold_and_steal(store)
        # The next heartbeat finds the lease gone: the run is cancelled, nothing settled.
        await wait_for_flag(flags["interrupted"])
        await wait_until_released(running.worker, job_id)

    final = await store.get(job_id)
    assert (final.state, final.result, final.worker) == (
        JobState.COMPLETED,
        "thief's result",
        "thief",
    )
    assert final.attempt == 2


async def test_a_run_that_ends_after_losing_its_lease_cannot_overwrite_the_result(
    deployment: Deployment, store: SqlJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Heartbeats far apart: the run ends (and its outcome is sent) before one notices.
    async with running_worker(
        deployment, registry, concurrency=1, lease_seconds=30, heartbeat_seconds=20
    ) as running:
        job_id, flags = await hold_and_steal(store)
        flag(flags["release"]).set()
        await wait_until_released(running.worker, job_id)

    assert not flag(flags["interrupted"]).is_set()  # it ran to the end, then was fenced off
    assert any(
        job_id in record.getMessage() and "discarded" in record.getMessage()
        for record in caplog.records
    )
    final = await store.get(job_id)
    assert (final.state, final.result, final.worker) == (
        JobState.COMPLETED,
        "thief's result",
        "thief",
    )


async def test_a_job_the_worker_claims_again_after_losing_it_runs_once_more_not_twice(
    deployment: Deployment, store: SqlJobStore
) -> None:
    release, interrupted = new_flag(), new_flag()
    # A long lease: only the test's steal takes the job away, never a late heartbeat.
    async with running_worker(deployment, registry, concurrency=2, lease_seconds=10) as running:
        args = {"release": release, "interrupted": interrupted}
        job = (await store.enqueue(NewJob(task="hold_attempt", args=args))).job
        await wait_for_state(store, job.id, JobState.RUNNING)
        await steal(store, job.id)
        # With a free slot, this worker claims the rescued job itself: the first run is void.
        await wait_for_flag(f"{interrupted}-1")
        await wait_for_state(store, job.id, JobState.RUNNING)
        flag(release).set()
        done = await wait_for_state(store, job.id, JobState.COMPLETED)
        await wait_until_released(running.worker, job.id)

    assert (done.result, done.attempt, done.worker) == (2, 2, running.worker.id)
    assert not flag(f"{interrupted}-2").is_set()


async def test_a_job_left_by_a_dead_worker_is_rescued_by_a_workers_own_monitor(
    deployment: Deployment, store: SqlJobStore
) -> None:
    release = new_flag()
    flag(release).set()
    args = {"release": release, "interrupted": new_flag()}
    job = (await store.enqueue(NewJob(task="hold_attempt", args=args))).job
    await store.claim(worker_id="dead-worker", queues=(), limit=1, lease_seconds=0.5)

    async with running_worker(deployment, registry) as running:  # its monitor is on
        done = await wait_for_state(store, job.id, JobState.COMPLETED)

    assert (done.result, done.attempt, done.worker) == (2, 2, running.worker.id)
    assert [error.type for error in done.errors] == ["LeaseExpired"]
