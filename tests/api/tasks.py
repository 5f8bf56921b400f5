"""The tasks API tests submit: defined here, registered in the store as a worker would."""

from __future__ import annotations

from conveyor.core.errors import NonRetryableError
from conveyor.runtime.context import JobContext
from conveyor.runtime.registry import TaskRegistry
from tests.contract.worker_harness import until_flag

registry = TaskRegistry()


@registry.task(name="math.square_sum", queue="math", max_attempts=3)
async def square_sum(numbers: list[float]) -> float:
    return sum(number * number for number in numbers)


@registry.task(name="demo.steps")
async def steps(release: str, ctx: JobContext) -> str:
    """Reports 50 %, waits for the test's flag, reports 100 %, completes."""
    ctx.progress(50, "half way")
    await until_flag(release)
    ctx.progress(100, "done")
    return "finished"


@registry.task(name="demo.stages")
async def stages(first: str, second: str, ctx: JobContext) -> str:
    """25 %, wait for flag `first`, 75 %, wait for flag `second`, complete."""
    ctx.progress(25, "started")
    await until_flag(first)
    ctx.progress(75, "most of it")
    await until_flag(second)
    return "finished"


@registry.task(name="always.refuses", max_attempts=1)
def refuses() -> None:
    raise NonRetryableError("the input can never work")


@registry.task(name="demo.echo", queue="echo")
def echo(payload: dict[str, object] | None = None) -> dict[str, object] | None:
    return payload
