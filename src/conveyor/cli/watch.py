"""`conveyor watch JOB_ID`: a live progress bar until the job ends."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from conveyor.cli.errors import CommandFailed
from conveyor.cli.facade import application, run
from conveyor.cli.output import console, describe_failure, dumps
from conveyor.client import Conveyor
from conveyor.core.job import Job, JobState


def watch(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="The job to follow.")],
) -> None:
    """Follow a job's state and progress until it ends.

    Exits 0 when it completed (printing its result), 1 when it failed or was cancelled.
    """
    final = run(application(ctx), lambda app: follow(app, job_id))
    if final.state is not JobState.COMPLETED:
        raise CommandFailed(describe_failure(final))
    typer.echo(f"job {final.id} completed: {dumps(final.result, indent=False)}")


async def follow(app: Conveyor, job_id: str) -> Job:
    """Render each change of the job until it is terminal; return its last state."""
    columns = (
        # User text (progress messages) is shown as written, never parsed as markup.
        TextColumn("{task.fields[state]:<9}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.description}", markup=False),
    )
    last: Job | None = None
    with Progress(*columns, console=console()) as progress:
        bar = progress.add_task("", total=100, state="")
        async for job in app.watch(job_id):
            progress.update(
                bar, completed=_percent(job), description=_message(job), state=job.state.value
            )
            last = job
    if last is None:  # pragma: no cover - watch() yields at least the current state
        raise CommandFailed(f"job {job_id} could not be read")
    return last


def _percent(job: Job) -> float:
    if job.state is JobState.COMPLETED:
        return 100.0
    return job.progress.percent if job.progress else 0.0


def _message(job: Job) -> str:
    return (job.progress.message if job.progress else None) or ""
