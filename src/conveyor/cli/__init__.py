"""The `conveyor` command line: a thin layer over the Conveyor facade.

One module per command group; errors become messages and exit codes in `errors.py` only.
"""

from __future__ import annotations

from typing import Annotated

import typer

from conveyor.cli.api import api
from conveyor.cli.db import db_app
from conveyor.cli.enqueue import enqueue
from conveyor.cli.errors import ConveyorGroup
from conveyor.cli.facade import GlobalOptions
from conveyor.cli.jobs import jobs_app
from conveyor.cli.keys import keys_app
from conveyor.cli.queues import queues_app
from conveyor.cli.up import up
from conveyor.cli.watch import watch
from conveyor.cli.worker import monitor, worker

__all__ = ["app", "main"]

app = typer.Typer(
    name="conveyor",
    cls=ConveyorGroup,
    help="Conveyor: durable asynchronous jobs for Python.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    # Plain usage errors: a few lines on stderr, never a box wrapped at 80 columns.
    rich_markup_mode=None,
)


@app.callback()
def configure(
    ctx: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="URL",
            help="The job store (sqlite:///path or postgresql://...); overrides "
            "CONVEYOR_DATABASE_URL for this command.",
        ),
    ] = None,
) -> None:
    """Options for every command. Settings come from CONVEYOR_* variables; flags win."""
    ctx.obj = GlobalOptions(database_url=database_url)


app.command("up")(up)
app.command("api")(api)
app.command("worker")(worker)
app.command("monitor")(monitor)
app.command("enqueue")(enqueue)
app.command("watch")(watch)
app.add_typer(jobs_app)
app.add_typer(queues_app)
app.add_typer(keys_app)
app.add_typer(db_app)


def main() -> None:
    """The `conveyor` console script and `python -m conveyor`."""
    app(prog_name="conveyor")
