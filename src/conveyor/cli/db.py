"""`conveyor db upgrade|current`: the job store's schema."""

from __future__ import annotations

import typer

from conveyor.cli.facade import application, describe_database, run

db_app = typer.Typer(name="db", help="Manage the job store's schema.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Migrate the job store to the schema this version needs (safe to run repeatedly).

    PostgreSQL needs this before workers start; a SQLite store migrates itself on first use.
    """
    app = application(ctx)
    run(app, lambda app: app.migrate())
    typer.echo(f"job store {describe_database(app.settings.database_url)} is up to date")


@db_app.command("current")
def current(ctx: typer.Context) -> None:
    """Print the store's schema revision and the one this version of Conveyor needs."""
    current_revision, head_revision = run(application(ctx), lambda app: app.schema_revision())
    typer.echo(f"current: {current_revision or 'none (not migrated)'}")
    typer.echo(f"head:    {head_revision}")
    if current_revision != head_revision:
        typer.echo("the store is behind: run `conveyor db upgrade`")
