"""Following one job for `Conveyor.watch`: the store says what happened, progress notices
say it sooner.

The store stays the truth: it is read every `interval` for state changes (and for progress
when no notice arrives, as without Redis). Between reads, a progress notice for the job's
current attempt is shown at once, on the job as last read, while that read says `running`.
A notice of a newer attempt than the last read knows (the job was claimed since) makes the
store be read again at once, and is shown on what that read says.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator

from conveyor.core.job import Job, JobState, Progress
from conveyor.ports import JobStore, ProgressNotice, Signals

Shown = tuple[JobState, Progress | None]
NOTICED_KEPT = 32


async def follow_job(
    store: JobStore, signals: Signals, job_id: str, tenant: str | None, interval: float
) -> AsyncGenerator[Job, None]:
    """Yield the job each time its state or progress changes, ending when terminal."""
    loop = asyncio.get_running_loop()
    shown: Shown | None = None
    ahead: ProgressNotice | None = None  # a notice of a run the last read did not know yet
    # Subscribed before the first read: no notice falls between what the store said and
    # what the notices say.
    noticed = Noticed()
    async with signals.follow_progress(job_id) as notices:
        while True:
            job = await store.get(job_id, tenant=tenant)
            if noticed.is_behind(job, shown):
                job = dataclasses.replace(job, progress=shown[1] if shown else None)
            if (job.state, job.progress) != shown:
                shown = (job.state, job.progress)
                yield job
            if job.is_terminal:
                return
            if ahead is not None and _is_news(job, ahead, shown):
                shown = (job.state, ahead.progress)
                noticed.add(job, ahead.progress)
                yield dataclasses.replace(job, progress=ahead.progress)
            ahead = None
            next_read = loop.time() + interval
            while (notice := await _next_notice(notices, next_read)) is not None:
                if notice.attempt > job.attempt:
                    ahead = notice
                    break
                if _is_news(job, notice, shown):
                    shown = (job.state, notice.progress)
                    noticed.add(job, notice.progress)
                    yield dataclasses.replace(job, progress=notice.progress)


class Noticed:
    """The progress shown from notices during the current run, so that a store read that
    lags behind them (the store has progress once per progress interval) neither repeats
    one nor steps back to an older one."""

    def __init__(self) -> None:
        self._attempt: int | None = None
        self._progress: deque[Progress | None] = deque(maxlen=NOTICED_KEPT)

    def add(self, job: Job, progress: Progress) -> None:
        if job.attempt != self._attempt:
            self._attempt = job.attempt
            self._progress.clear()
            self._progress.append(None)  # the store's "no progress yet" is older still
        self._progress.append(progress)

    def is_behind(self, job: Job, shown: Shown | None) -> bool:
        """Whether the store's progress is one the notices already went past."""
        return (
            shown is not None
            and job.state is JobState.RUNNING
            and shown[0] is JobState.RUNNING
            and job.attempt == self._attempt
            and job.progress != shown[1]
            and job.progress in self._progress
        )


def _is_news(job: Job, notice: ProgressNotice, shown: Shown) -> bool:
    # A notice of an earlier attempt, or one arriving after the run ended, is stale.
    return (
        job.state is JobState.RUNNING
        and notice.attempt == job.attempt
        and notice.progress != shown[1]
    )


async def _next_notice(
    notices: AsyncIterator[ProgressNotice], deadline: float
) -> ProgressNotice | None:
    """The next notice that arrives before `deadline`; None once it has passed."""
    try:
        async with asyncio.timeout_at(deadline):
            return await anext(notices)
    except TimeoutError:
        return None
    except StopAsyncIteration:  # the signals closed: only the store is left
        await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time()))
        return None
