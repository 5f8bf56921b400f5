"""`conveyor jobs list|show|cancel|retry|delete`: read and steer jobs in the store."""

from __future__ import annotations

from typing import Annotated

import typer

from conveyor.cli.facade import application, run
from conveyor.cli.output import (
    console,
    job_details,
    job_table,
    job_to_json,
    page_to_json,
    print_json,
)
from conveyor.client import Conveyor
from conveyor.core.job import Job, JobState
from conveyor.ports import JobFilter

MAX_PAGE_SIZE = 500

jobs_app = typer.Typer(
    name="jobs", help="List, inspect, cancel, retry and delete jobs.", no_args_is_help=True
)

JobId = Annotated[str, typer.Argument(metavar="JOB_ID", help="The job's id.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@jobs_app.command("list")
def list_jobs(
    ctx: typer.Context,
    *,
    states: Annotated[
        list[JobState] | None,
        typer.Option("--state", case_sensitive=False, help="Only jobs in this state (repeatable)."),
    ] = None,
    task: Annotated[str | None, typer.Option(help="Only jobs of this task.")] = None,
    queue: Annotated[str | None, typer.Option(help="Only jobs in this queue.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only jobs with this tag.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE_SIZE, help="Page size.")] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="Continue after a previous page (its next cursor).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List jobs, newest first, one page at a time."""
    job_filter = JobFilter(states=tuple(states or ()), task=task, queue=queue, tag=tag)

    async def fetch(app: Conveyor) -> None:
        page = await app.list_jobs(job_filter, limit=limit, cursor=cursor)
        if as_json:
            print_json(page_to_json(page))
            return
        if not page.items:
            typer.echo("no jobs")
            return
        console().print(job_table(page.items))
        if page.next_cursor is not None:
            typer.echo(f"next page: --cursor {page.next_cursor}")

    run(application(ctx), fetch)


@jobs_app.command("show")
def show(ctx: typer.Context, job_id: JobId, as_json: JsonFlag = False) -> None:
    """Show every field of a job, including each failed attempt with its traceback."""

    async def fetch(app: Conveyor) -> None:
        job = await app.get(job_id)
        if as_json:
            print_json(job_to_json(job))
        else:
            console().print(job_details(job))

    run(application(ctx), fetch)


@jobs_app.command("cancel")
def cancel(ctx: typer.Context, job_id: JobId) -> None:
    """Cancel a waiting job at once; ask a running job to stop."""
    job = run(application(ctx), lambda app: app.cancel(job_id))
    typer.echo(_cancel_message(job))


def _cancel_message(job: Job) -> str:
    if job.state is JobState.CANCELLED:
        return f"cancelled job {job.id}"
    # A running job stops when its worker learns of the request, at the next heartbeat.
    return f"cancel requested for job {job.id} ({job.state.value}); its worker will stop it"


@jobs_app.command("retry")
def retry(ctx: typer.Context, job_id: JobId) -> None:
    """Put a failed or cancelled job back in its queue, with its attempts reset."""
    job = run(application(ctx), lambda app: app.retry(job_id))
    typer.echo(f"job {job.id} is {job.state.value} again")


@jobs_app.command("delete")
def delete(ctx: typer.Context, job_id: JobId) -> None:
    """Delete a job that has ended (completed, failed or cancelled)."""
    run(application(ctx), lambda app: app.delete(job_id))
    typer.echo(f"deleted job {job_id}")
