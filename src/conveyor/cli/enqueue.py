"""`conveyor enqueue`: submit one job, and optionally wait for its result."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer

from conveyor.cli.errors import CommandFailed
from conveyor.cli.facade import application, run
from conveyor.cli.output import dumps
from conveyor.client import Conveyor

AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        metavar="MODULE:ATTRIBUTE",
        help="Validate against this app's task code instead of the tasks workers registered.",
    ),
]


def parse_arguments(text: str) -> dict[str, Any]:
    """The --args value: a JSON object (the task's keyword arguments)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise typer.BadParameter(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        kind = type(value).__name__ if value is not None else "null"
        raise typer.BadParameter(
            f"must be a JSON object of named arguments, like '{{\"numbers\": [1, 2]}}', "
            f"not a {kind}"
        )
    return value


def enqueue(
    ctx: typer.Context,
    *,
    task: Annotated[
        str, typer.Argument(metavar="TASK", help="The task's name, e.g. math.square_sum.")
    ],
    arguments: Annotated[
        dict[str, Any] | None,
        typer.Option(
            "--args",
            metavar="JSON",
            parser=parse_arguments,
            help="The arguments as a JSON object, e.g. '{\"numbers\": [1, 2, 3]}'.",
        ),
    ] = None,
    queue: Annotated[str | None, typer.Option(help="Override the task's queue.")] = None,
    delay: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="Run no sooner than this from now.")
    ] = None,
    priority: Annotated[int | None, typer.Option(help="Higher runs first.")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts before it fails.")] = None,
    timeout: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="Time limit of one attempt.")
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", metavar="TAG", help="A tag (repeatable).")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(metavar="KEY", help="Submitting the same key again returns the same job."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the job to end and print its result.")
    ] = False,
    wait_timeout: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", min=0, help="With --wait: give up after this long."),
    ] = None,
    app_spec: AppOption = None,
) -> None:
    """Submit a job and print its id (with --wait, then its result as JSON).

    Exits 0 when the job was accepted (with --wait: when it completed), 1 when it ended
    failed or cancelled or did not end in time.
    """
    app = application(ctx, app_spec)

    async def submit(app: Conveyor) -> None:
        job = await app.enqueue(
            task,
            arguments or {},
            queue=queue,
            priority=priority,
            delay=delay,
            max_attempts=max_attempts,
            timeout=timeout,
            tags=tags or (),
            idempotency_key=idempotency_key,
        )
        typer.echo(job.id)
        if wait:
            typer.echo(dumps(await _result(app, job.id, wait_timeout), indent=False))

    run(app, submit)


async def _result(app: Conveyor, job_id: str, timeout: float | None) -> Any:
    try:
        return await app.wait(job_id, timeout=timeout)
    except TimeoutError:
        raise CommandFailed(
            f"job {job_id} did not end within {timeout:g} seconds; "
            f"follow it with: conveyor watch {job_id}"
        ) from None
