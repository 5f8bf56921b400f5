"""Waiting in tests: poll a condition until a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from conveyor.core.job import Job, JobState

T = TypeVar("T")


class JobReader(Protocol):
    """Anything that reads a job by id: a JobStore, or the Conveyor facade."""

    async def get(self, job_id: str) -> Job: ...


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    interval: float = 0.05,
    message: str = "condition",
) -> T:
    """Return the first truthy value of `check()`, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        await asyncio.sleep(interval)


async def job_in_state(reader: JobReader, job_id: str, *states: JobState) -> Job | None:
    job = await reader.get(job_id)
    return job if job.state in states else None


async def wait_for_state(
    reader: JobReader, job_id: str, *states: JobState, timeout: float = 30.0
) -> Job:
    """The job once it is in one of `states`, or fail after `timeout` seconds."""

    async def reached() -> Job | None:
        return await job_in_state(reader, job_id, *states)

    names = "/".join(state.value for state in states)
    return await eventually(reached, timeout=timeout, message=f"job {job_id} to be {names}")
