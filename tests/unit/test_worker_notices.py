"""The worker's notices: progress published coalesced and promptly, one publish at a time;
a cancel notice stops the run of its job only if it names that run's attempt and the store
confirms the request.

`QueuedSignals` is an in-memory `Signals` of this test (no Redis): it hands out the cancel
notices the test puts in, and records each progress publish, holding it until released.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from conveyor.core.job import Job, JobState, Progress
from conveyor.ports import CancelNotice, Claim, ProgressNotice
from conveyor.runtime.context import JobContext
from conveyor.runtime.notices import WorkerNotices
from conveyor.runtime.runs import Run, StopReason

WAIT = 10.0


class QueuedSignals:
    def __init__(self) -> None:
        self.cancels: asyncio.Queue[CancelNotice] = asyncio.Queue()
        self.published: list[list[ProgressNotice]] = []
        self.publishing = asyncio.Event()  # set when a publish starts
        self.release = asyncio.Event()  # a publish returns once this is set

    async def publish_cancel(self, notice: CancelNotice) -> None:
        await self.cancels.put(notice)

    async def publish_progress(self, notices: Sequence[ProgressNotice]) -> None:
        self.published.append(list(notices))
        self.publishing.set()
        await self.release.wait()

    @asynccontextmanager
    async def cancellations(self) -> AsyncIterator[AsyncIterator[CancelNotice]]:
        yield self._cancels()

    async def _cancels(self) -> AsyncIterator[CancelNotice]:
        while True:
            yield await self.cancels.get()

    @asynccontextmanager
    async def follow_progress(self, job_id: str) -> AsyncIterator[AsyncIterator[ProgressNotice]]:
        yield self._no_progress()  # workers never follow progress

    async def _no_progress(self) -> AsyncIterator[ProgressNotice]:
        nothing: tuple[ProgressNotice, ...] = ()
        for notice in nothing:
            yield notice

    async def close(self) -> None:
        return


def running_job(job_id: str, attempt: int = 1) -> Job:
    now = datetime.now(UTC)
    return Job(
        id=job_id,
        task="task",
        queue="default",
        state=JobState.RUNNING,
        priority=0,
        args={},
        attempt=attempt,
        max_attempts=3,
        timeout=None,
        run_at=now,
        created_at=now,
    )


def confirmed_by(
    requests: dict[tuple[str, int], bool],
) -> Callable[[CancelNotice], Awaitable[bool]]:
    """A store's answer: whether the cancel request of (job, attempt) is recorded."""

    async def confirm(notice: CancelNotice) -> bool:
        return requests.get((notice.job_id, notice.attempt), False)

    return confirm


def run_of(job: Job) -> Run:
    return Run(Claim(job, f"token-{job.id}"), JobContext(job, report_progress=lambda _: None))


async def test_reports_made_while_a_publish_is_out_go_together_latest_per_job() -> None:
    signals = QueuedSignals()  # WorkerNotices takes it as its Signals: mypy checks it is one
    notices = WorkerNotices(signals, runs={}, stop_run=lambda *_: None, confirm=confirmed_by({}))
    first, second = running_job("job-1"), running_job("job-2", attempt=2)

    notices.progress(first, Progress(10))
    await asyncio.wait_for(signals.publishing.wait(), WAIT)
    for percent in (20, 30, 40):
        notices.progress(first, Progress(percent))
    notices.progress(second, Progress(5, "two"))
    signals.release.set()
    await asyncio.wait_for(notices.close(), WAIT)

    assert signals.published == [
        [ProgressNotice("job-1", 1, Progress(10))],
        [ProgressNotice("job-1", 1, Progress(40)), ProgressNotice("job-2", 2, Progress(5, "two"))],
    ]


async def test_a_cancel_notice_stops_only_the_run_of_the_attempt_it_names() -> None:
    signals = QueuedSignals()
    job = running_job("job-1", attempt=2)
    stopped: list[tuple[str, str, StopReason]] = []
    heard = asyncio.Event()

    def stop_run(job_id: str, token: str, reason: StopReason) -> None:
        stopped.append((job_id, token, reason))
        heard.set()

    other = running_job("job-2")
    runs = {job.id: run_of(job), other.id: run_of(other)}
    confirm = confirmed_by({("job-1", 2): True, ("job-1", 1): True})  # job-2: a forged notice
    notices = WorkerNotices(signals, runs=runs, stop_run=stop_run, confirm=confirm)
    listening = asyncio.create_task(notices.listen())
    try:
        await asyncio.wait_for(notices.listening.wait(), WAIT)
        for notice in (
            CancelNotice("job-1", 1),
            CancelNotice("job-9", 2),
            CancelNotice("job-2", 1),
            CancelNotice("job-1", 2),
        ):
            await signals.publish_cancel(notice)
        await asyncio.wait_for(heard.wait(), WAIT)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)

    # Handled in order: the three notices before the matching one were passed over.
    assert stopped == [("job-1", "token-job-1", StopReason.CANCEL_REQUESTED)]
