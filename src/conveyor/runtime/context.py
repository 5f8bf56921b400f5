"""JobContext: what a running handler may know about its job and tell the worker."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable

from conveyor.core.job import Job, Progress
from conveyor.runtime.submission import json_problems

MAX_PROGRESS_MESSAGE_LENGTH = 1000


class JobContext:
    """Injected into the handler parameter annotated `JobContext`.

    The worker builds one per attempt. Handlers use it to report progress and to notice
    that they should stop: `cancelled` turns true (and `wait_cancelled` returns) when the
    job is cancelled, its lease is lost or its timeout fires. Async handlers are also
    cancelled outright; a plain function running in a thread cannot be, so it should poll
    `cancelled` in long loops to stop early.

    `progress()` may be called from any thread. When the context was created inside a
    running event loop, `report_progress` is always invoked on that loop's thread (calls
    from other threads, such as a plain function's or the worker's handler loop, are
    handed over with `call_soon_threadsafe`), so the worker may keep its bookkeeping
    unsynchronised.
    """

    def __init__(self, job: Job, *, report_progress: Callable[[Progress], None]) -> None:
        self._job = job
        self._report_progress = report_progress
        self._cancelled = False
        # Made only when a plain-function handler waits on it: a threading.Event per job
        # cost more than the rest of setting up a run.
        self._cancel_event: threading.Event | None = None
        self._loop = _running_loop()
        self._loop_thread = threading.get_ident()

    @property
    def job(self) -> Job:
        """The job as it was claimed (state `running`, `attempt` already counted)."""
        return self._job

    @property
    def job_id(self) -> str:
        return self._job.id

    @property
    def attempt(self) -> int:
        """This attempt's number, from 1."""
        return self._job.attempt

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block (in a plain-function handler) until the run should stop, or `timeout`.

        Returns whether it should stop. Never call this from an async handler: it blocks
        the event loop, and with it every other async handler of the worker.
        """
        with _CANCEL_EVENTS:
            if self._cancel_event is None:
                self._cancel_event = threading.Event()
            event = self._cancel_event
        if self._cancelled:  # marked before the event existed
            event.set()
        return event.wait(timeout)

    def mark_cancelled(self) -> None:
        """Called by the worker and the runner; tells a cooperative handler to stop."""
        self._cancelled = True
        with _CANCEL_EVENTS:
            event = self._cancel_event
        if event is not None:
            event.set()

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report how far the job got, 0 to 100, with an optional short message."""
        _check_percent(percent)
        _check_message(message)
        self._hand_over(Progress(float(percent), message))

    def _hand_over(self, progress: Progress) -> None:
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            self._report_progress(progress)
            return
        try:
            loop.call_soon_threadsafe(self._report_progress, progress)
        except RuntimeError:
            # The loop is closed: the worker has stopped and this attempt's outcome was
            # already decided, so the late progress has nowhere to go.
            return

    def __repr__(self) -> str:
        return f"JobContext(job_id={self.job_id!r}, attempt={self.attempt})"


_CANCEL_EVENTS = threading.Lock()
"""Guards the lazy creation of cancel events (mark and wait may race on two threads)."""


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _check_percent(percent: float) -> None:
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise TypeError(f"progress percent must be a number, got {type(percent).__name__}")
    if not (math.isfinite(percent) and 0 <= percent <= 100):
        raise ValueError(f"progress percent must be between 0 and 100, got {percent!r}")


def _check_message(message: str | None) -> None:
    if message is None:
        return
    if not isinstance(message, str):
        raise TypeError(f"progress message must be a string, got {type(message).__name__}")
    if len(message) > MAX_PROGRESS_MESSAGE_LENGTH:
        raise ValueError(
            f"progress message must be at most {MAX_PROGRESS_MESSAGE_LENGTH} characters, "
            f"got {len(message)}"
        )
    problems = json_problems(message, ())
    if problems:
        raise ValueError(f"progress message: {problems[0].message}")
