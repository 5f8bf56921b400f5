"""How jobs look on a terminal (Rich) and in `--json` output (the HTTP API's job shape).

User data (arguments, results, error messages, tracebacks) is always rendered as plain
text, never as Rich markup: a message containing "[red]" must print as written.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import typer
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from conveyor.core.job import ErrorInfo, Job, JobState, JSONValue, Progress
from conveyor.ports import JobPage

STATE_STYLES = {
    JobState.SCHEDULED: "cyan",
    JobState.QUEUED: "blue",
    JobState.RUNNING: "yellow",
    JobState.RETRYABLE: "magenta",
    JobState.COMPLETED: "green",
    JobState.FAILED: "red",
    JobState.CANCELLED: "dim",
}
# A UUIDv7 job id is 36 characters: the id column never folds or truncates it.
JOB_ID_WIDTH = 36
# Piped or redirected output has no terminal width; Rich would assume 80 columns and
# squeeze the table. Lines this long are still easy to grep and read.
UNBOUNDED_WIDTH = 200


def console() -> Console:
    # Built per call so that a test runner's replaced stdout is the one written to.
    width = None if sys.stdout.isatty() else UNBOUNDED_WIDTH
    return Console(highlight=False, width=width)


def print_json(value: JSONValue) -> None:
    typer.echo(dumps(value))


def dumps(value: JSONValue, *, indent: bool = True) -> str:
    option = orjson.OPT_INDENT_2 if indent else 0
    return orjson.dumps(value, option=option | orjson.OPT_NON_STR_KEYS).decode()


# JSON ----------------------------------------------------------------------------------


def job_to_json(job: Job) -> dict[str, JSONValue]:
    """The job object of the HTTP API (DESIGN §6), plus the whole error history."""
    return {
        "id": job.id,
        "task": job.task,
        "queue": job.queue,
        "state": job.state.value,
        "priority": job.priority,
        "args": dict(job.args),
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "run_at": _instant(job.run_at),
        "created_at": _instant(job.created_at),
        "started_at": _instant(job.started_at),
        "finished_at": _instant(job.finished_at),
        "progress": _progress_json(job.progress),
        "result": job.result,
        "error": _error_json(job.error) if job.error else None,
        "errors": [_error_json(error) for error in job.errors],
        "idempotency_key": job.idempotency_key,
        "tags": list(job.tags),
        "worker": job.worker,
        "cancel_requested": job.cancel_requested,
    }


def page_to_json(page: JobPage) -> dict[str, JSONValue]:
    return {"items": [job_to_json(job) for job in page.items], "next_cursor": page.next_cursor}


def _instant(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _progress_json(progress: Progress | None) -> dict[str, JSONValue] | None:
    if progress is None:
        return None
    return {"percent": progress.percent, "message": progress.message}


def _error_json(error: ErrorInfo) -> dict[str, JSONValue]:
    return {
        "type": error.type,
        "message": error.message,
        "attempt": error.attempt,
        "traceback": error.traceback,
    }


# Tables and details --------------------------------------------------------------------


def job_table(jobs: Sequence[Job]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("ID", no_wrap=True, min_width=JOB_ID_WIDTH)
    # On a narrow terminal the other columns fold (wrap within the cell), never truncate.
    for header in ("TASK", "QUEUE", "STATE"):
        table.add_column(header, overflow="fold")
    table.add_column("ATTEMPT", justify="right", overflow="fold")
    table.add_column("PROGRESS", overflow="fold")
    table.add_column("CREATED (UTC)", overflow="fold")
    for job in jobs:
        table.add_row(
            Text(job.id),
            Text(job.task),
            Text(job.queue),
            state_text(job.state),
            f"{job.attempt}/{job.max_attempts}",
            Text(describe_progress(job.progress)),
            short_instant(job.created_at),
        )
    return table


def job_details(job: Job) -> RenderableType:
    """Every field of a job, its arguments and result, and each failed attempt."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column()
    for name, value in _detail_rows(job):
        fields.add_row(name, value)
    parts: list[RenderableType] = [fields]
    for error in job.errors:
        parts.extend(_error_section(error))
    return Group(*parts)


def _detail_rows(job: Job) -> list[tuple[str, Text]]:
    rows = [
        ("id", Text(job.id)),
        ("task", Text(job.task)),
        ("queue", Text(job.queue)),
        ("state", state_text(job.state)),
        ("priority", Text(str(job.priority))),
        ("attempt", Text(f"{job.attempt} of {job.max_attempts}")),
        ("timeout", Text("none" if job.timeout is None else f"{job.timeout:g} s")),
        ("tags", Text(", ".join(job.tags) or "none")),
        ("idempotency key", Text(job.idempotency_key or "none")),
        ("created", Text(short_instant(job.created_at))),
        ("run at", Text(short_instant(job.run_at))),
        ("started", Text(short_instant(job.started_at))),
        ("finished", Text(short_instant(job.finished_at))),
        ("worker", Text(job.worker or "none")),
        ("progress", Text(describe_progress(job.progress) or "none")),
        ("args", Text(dumps(dict(job.args), indent=False))),
        ("result", Text(dumps(job.result, indent=False))),
    ]
    if job.cancel_requested and not job.is_terminal:
        rows.append(("cancel", Text("requested; the worker stops the job at its next heartbeat")))
    return rows


def _error_section(error: ErrorInfo) -> list[RenderableType]:
    heading = Text(f"\nattempt {error.attempt} failed: ", style="bold red")
    heading.append(f"{error.type}: {error.message}", style="red")
    if not error.traceback:
        return [heading]
    return [heading, Text(error.traceback.rstrip("\n"), style="dim")]


def state_text(state: JobState) -> Text:
    return Text(state.value, style=STATE_STYLES.get(state, ""))


def describe_progress(progress: Progress | None) -> str:
    if progress is None:
        return ""
    percent = f"{progress.percent:.0f}%"
    return f"{percent} {progress.message}" if progress.message else percent


def short_instant(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def describe_failure(job: Job) -> str:
    """One line for a job that ended without a result: its state and its last error."""
    error = job.error
    if job.state is JobState.CANCELLED or error is None:
        return f"job {job.id} ended {job.state.value}"
    return f"job {job.id} ended {job.state.value}: {error.type}: {error.message}"
