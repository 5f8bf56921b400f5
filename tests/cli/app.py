"""A small app for the CLI tests: `--app tests.cli.app:app`."""

from __future__ import annotations

import asyncio
import gc

from conveyor import Conveyor, JobContext

app = Conveyor()

not_an_app = "a string, not a Conveyor app"


@app.task(name="cli.add", queue="arithmetic")
async def add(a: int, b: int) -> int:
    return a + b


@app.task(name="cli.fail", max_attempts=1)
async def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="cli.stages")
async def stages(seconds: float, ctx: JobContext) -> str:
    """Reports two stages of progress, so that `conveyor watch` has something to show."""
    ctx.progress(10, "loading")
    await asyncio.sleep(seconds / 2)
    ctx.progress(60, "rendering")
    await asyncio.sleep(seconds / 2)
    return "rendered"


@app.task(name="cli.frozen_objects")
async def frozen_objects() -> int:
    """How many objects the worker's process froze out of the collector's full passes."""
    return gc.get_freeze_count()
