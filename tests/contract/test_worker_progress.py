"""Progress reported by a handler reaches the store while the job runs, throttled: a
chatty handler costs a few writes a second, and the last report is the one kept."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from conveyor.core.job import JobState, NewJob, Progress
from conveyor.ports import ProgressUpdate
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
)
from tests.waiting import eventually, wait_for_state

REPORTS = 10_000

pytestmark = ON_EVERY_BROKER

registry = TaskRegistry()


@registry.task(name="chatty")
def chatty(ctx: JobContext) -> int:
    for step in range(1, REPORTS + 1):
        ctx.progress(step * 100 / REPORTS, f"step {step}")
        if step % 1000 == 0:
            time.sleep(0.1)  # spread the reports over about a second
    return REPORTS


@registry.task(name="halfway")
async def halfway(release: str, ctx: JobContext) -> str:
    ctx.progress(50, "half done")
    await until_flag(release)
    return "done"


class CountingStore(SqlJobStore):
    """The real store, counting its progress writes (made on the heartbeat thread)."""

    progress_writes = 0
    _lock = threading.Lock()

    async def record_progress(self, updates: Sequence[ProgressUpdate]) -> frozenset[str]:
        with self._lock:
            CountingStore.progress_writes += 1
        return await super().record_progress(updates)


async def test_a_chatty_handler_causes_few_writes_and_its_last_report_is_kept(
    deployment: Deployment, store: SqlJobStore
) -> None:
    CountingStore.progress_writes = 0
    async with running_worker(deployment, registry, store_class=CountingStore):
        job = (await store.enqueue(NewJob(task="chatty"))).job
        done = await wait_for_state(store, job.id, JobState.COMPLETED)

    assert done.result == REPORTS
    assert done.progress == Progress(100.0, f"step {REPORTS}")
    # About a second of reporting at one write per 0.5 s, and never one per report.
    assert 1 <= CountingStore.progress_writes <= 6


async def test_progress_is_visible_while_the_job_is_still_running(
    deployment: Deployment, store: SqlJobStore
) -> None:
    release = new_flag()
    async with running_worker(deployment, registry):
        job = (await store.enqueue(NewJob(task="halfway", args={"release": release}))).job

        async def reported() -> bool:
            current = await store.get(job.id)
            return current.progress == Progress(50.0, "half done")

        await eventually(reported, timeout=WAIT, message="progress to be written")
        assert (await store.get(job.id)).state is JobState.RUNNING
        flag(release).set()
        done = await wait_for_state(store, job.id, JobState.COMPLETED)

    assert done.progress == Progress(50.0, "half done")
