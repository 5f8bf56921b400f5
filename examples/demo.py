"""Tasks that show the platform at work: stages of progress, cancellation, retries."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from conveyor import JobContext

STAGES = ("loading", "processing", "rendering")
MAX_SECONDS = 24 * 3600.0


def sleep(
    seconds: Annotated[float, Field(ge=0, le=MAX_SECONDS)], ctx: JobContext
) -> dict[str, object]:
    """Take `seconds` to finish, in named stages, stopping early when cancelled.

    A plain function cannot be interrupted from outside, so it waits on the context:
    `wait_cancelled` returns at once when the job is cancelled or times out.
    """
    share = seconds / len(STAGES)
    for index, stage in enumerate(STAGES):
        ctx.progress(100 * index / len(STAGES), stage)
        if ctx.wait_cancelled(share):
            return {"stopped_at": stage}
    ctx.progress(100, "done")
    return {"slept": seconds}


class PlannedFailure(RuntimeError):
    """The failure `demo.flaky` was asked to produce."""


def flaky(failures: Annotated[int, Field(ge=0, le=100)], ctx: JobContext) -> dict[str, int]:
    """Fail the first `failures` attempts, then succeed: watch the retries happen.

    Give the job enough attempts (`--max-attempts`) or it ends in the dead-letter queue.
    """
    if ctx.attempt <= failures:
        raise PlannedFailure(f"attempt {ctx.attempt}: failing as planned ({failures} failures)")
    return {"succeeded_on_attempt": ctx.attempt}
