"""Tasks that misbehave on purpose, run by real worker processes in the integration tests."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from conveyor import Conveyor, JobContext

app = Conveyor()


@app.task(name="itest.noop")
async def noop() -> int:
    return os.getpid()


@app.task(name="itest.wait_for_file")
async def wait_for_file(path: str, ctx: JobContext) -> dict[str, int]:
    """Runs until `path` exists, so a test can act while the job is surely running."""
    Path(f"{path}.started-{ctx.attempt}").touch()
    while not Path(path).exists():
        await asyncio.sleep(0.02)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@app.task(name="itest.kill_own_worker", max_attempts=3)
def kill_own_worker() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="itest.block_event_loop")
async def block_event_loop(seconds: float, runs_file: str) -> int:
    """Blocks the worker's event loop (a common bug in real handlers) for `seconds`."""
    with Path(runs_file).open("a") as runs:
        runs.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return os.getpid()


@app.task(name="itest.hold_first_attempt")
async def hold_first_attempt(release_path: str, ctx: JobContext) -> dict[str, int]:
    """The first attempt waits for `release_path`; later attempts finish at once."""
    if ctx.attempt == 1:
        Path(f"{release_path}.started").touch()
        while not Path(release_path).exists():
            await asyncio.sleep(0.02)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@app.task(name="itest.sleep")
async def sleep(seconds: float, ctx: JobContext) -> float:
    ctx.progress(0, "sleeping")
    await asyncio.sleep(seconds)
    return seconds


@app.task(name="itest.record_run")
async def record_run(runs_file: str, seconds: float, ctx: JobContext) -> None:
    """Appends a line per execution (job id, attempt, pid) before running for `seconds`,
    so a test can count how many times each job ran, across processes."""
    line = f"{ctx.job_id} {ctx.attempt} {os.getpid()}\n".encode()
    # One write to an O_APPEND file: lines of concurrent workers never interleave.
    descriptor = os.open(runs_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)
    await asyncio.sleep(seconds)
