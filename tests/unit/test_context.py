"""JobContext: progress reports reach the worker from any thread; cancellation is visible."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from conveyor.core.job import Job, JobState, Progress
from conveyor.runtime.context import MAX_PROGRESS_MESSAGE_LENGTH, JobContext

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def running_job(attempt: int = 2) -> Job:
    return Job(
        id="job-7",
        task="reports.csv",
        queue="default",
        state=JobState.RUNNING,
        priority=0,
        args={},
        attempt=attempt,
        max_attempts=5,
        timeout=None,
        run_at=NOW,
        created_at=NOW,
    )


def test_the_context_describes_the_running_job() -> None:
    job = running_job(attempt=2)
    context = JobContext(job, report_progress=lambda progress: None)
    assert (context.job, context.job_id, context.attempt) == (job, "job-7", 2)
    assert not context.cancelled


def test_progress_is_handed_to_the_worker() -> None:
    reports: list[Progress] = []
    context = JobContext(running_job(), report_progress=reports.append)
    context.progress(10, "querying")
    context.progress(100)
    assert reports == [Progress(10.0, "querying"), Progress(100.0, None)]


@pytest.mark.parametrize("percent", [-0.1, 100.5, float("nan"), float("inf")])
def test_progress_outside_0_to_100_is_refused(percent: float) -> None:
    reports: list[Progress] = []
    context = JobContext(running_job(), report_progress=reports.append)
    with pytest.raises(ValueError, match="between 0 and 100"):
        context.progress(percent)
    assert reports == []


def test_progress_must_be_a_number_and_the_message_text() -> None:
    context = JobContext(running_job(), report_progress=lambda progress: None)
    with pytest.raises(TypeError, match="percent must be a number"):
        context.progress("50")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="percent must be a number"):
        context.progress(True)
    with pytest.raises(TypeError, match="message must be a string"):
        context.progress(5, 42)  # type: ignore[arg-type]


def test_progress_messages_are_bounded_and_storable() -> None:
    context = JobContext(running_job(), report_progress=lambda progress: None)
    with pytest.raises(ValueError, match="at most"):
        context.progress(5, "x" * (MAX_PROGRESS_MESSAGE_LENGTH + 1))
    with pytest.raises(ValueError, match="NUL"):
        context.progress(5, "bad\x00text")


async def test_progress_from_a_thread_is_delivered_on_the_event_loop_thread() -> None:
    delivered = asyncio.Event()
    seen: list[tuple[Progress, int]] = []

    def report(progress: Progress) -> None:
        seen.append((progress, threading.get_ident()))
        delivered.set()

    context = JobContext(running_job(), report_progress=report)
    await asyncio.to_thread(context.progress, 50, "half")
    await asyncio.wait_for(delivered.wait(), timeout=5)
    assert seen == [(Progress(50.0, "half"), threading.get_ident())]


def test_mark_cancelled_wakes_a_handler_waiting_in_a_thread() -> None:
    context = JobContext(running_job(), report_progress=lambda progress: None)
    outcome: list[bool] = []
    waiter = threading.Thread(target=lambda: outcome.append(context.wait_cancelled(30)))
    waiter.start()
    context.mark_cancelled()
    waiter.join(timeout=30)
    assert outcome == [True]
    assert context.cancelled


def test_wait_cancelled_returns_false_when_not_cancelled() -> None:
    context = JobContext(running_job(), report_progress=lambda progress: None)
    assert context.wait_cancelled(0) is False
