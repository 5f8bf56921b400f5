"""`conveyor queues list|pause|resume`: every tenant's queues, and claiming from them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.errors import invalid_input
from conveyor.cli.facade import application, run
from conveyor.cli.output import console, print_json
from conveyor.core.job import JobState, JSONValue
from conveyor.ports import QueueInfo

queues_app = typer.Typer(
    name="queues", help="List queues; pause and resume claiming from them.", no_args_is_help=True
)

QueueName = Annotated[str, typer.Argument(metavar="NAME", help="The queue's name.")]
SECONDS_PER_MINUTE = 60
SECONDS_PER_HOUR = 3600


@queues_app.command("list")
def list_queues(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every queue of every tenant: paused or not, jobs by state, oldest queued job's age."""
    queues = run(application(ctx), lambda app: app.list_queues(tenant=None))
    if as_json:
        print_json([queue_to_json(queue) for queue in queues])
    elif not queues:
        typer.echo("no queues")
    else:
        console().print(queue_table(queues))


@queues_app.command("pause")
def pause(ctx: typer.Context, name: QueueName) -> None:
    """Stop workers claiming from the queue; running jobs finish, new ones wait."""
    with invalid_input("queue name"):
        run(application(ctx), lambda app: app.pause_queue(name))
    typer.echo(f"paused queue {name}: workers claim nothing from it until it is resumed")


@queues_app.command("resume")
def resume(ctx: typer.Context, name: QueueName) -> None:
    """Let workers claim from the queue again."""
    with invalid_input("queue name"):
        run(application(ctx), lambda app: app.resume_queue(name))
    typer.echo(f"resumed queue {name}")


def queue_to_json(queue: QueueInfo) -> dict[str, JSONValue]:
    return {
        "name": queue.name,
        "paused": queue.paused,
        "counts": {state.value: queue.counts.get(state, 0) for state in JobState},
        "oldest_queued_age_seconds": queue.oldest_queued_age_seconds,
    }


def queue_table(queues: Sequence[QueueInfo]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("QUEUE", overflow="fold")
    table.add_column("PAUSED")
    for state in JobState:
        table.add_column(state.value.upper(), justify="right")
    table.add_column("OLDEST QUEUED", justify="right")
    for queue in queues:
        table.add_row(
            Text(queue.name),
            "yes" if queue.paused else "no",
            *(str(queue.counts.get(state, 0)) for state in JobState),
            describe_age(queue.oldest_queued_age_seconds),
        )
    return table


def describe_age(seconds: float | None) -> str:
    """A short age for a table cell: 42s, 3m 07s, 5h 02m; '-' when nothing is queued."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < SECONDS_PER_MINUTE:
        return f"{whole}s"
    if whole < SECONDS_PER_HOUR:
        return f"{whole // SECONDS_PER_MINUTE}m {whole % SECONDS_PER_MINUTE:02d}s"
    minutes = whole % SECONDS_PER_HOUR // SECONDS_PER_MINUTE
    return f"{whole // SECONDS_PER_HOUR}h {minutes:02d}m"
