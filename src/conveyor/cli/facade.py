"""How a command gets the Conveyor app it works with, and runs its coroutines.

Settings are read here, once per command, at the edge. Commands without `--app` get a
producer-only app (no task code: submissions are validated against the tasks workers
registered in the store). With `--app`, the user's module builds its own app; a
`--database-url` flag still wins over whatever that app read from the environment.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from conveyor.client import Conveyor
from conveyor.config import Settings, load_settings
from conveyor.loading import load_app
from conveyor.runtime import event_loops

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    """The root command's options, shared with every subcommand through `ctx.obj`."""

    database_url: str | None = None


def global_options(ctx: typer.Context) -> GlobalOptions:
    options = ctx.find_root().obj
    return options if isinstance(options, GlobalOptions) else GlobalOptions()


def settings_for(ctx: typer.Context) -> Settings:
    """The environment, with the command line's overrides applied (flags win)."""
    return load_settings(database_url=global_options(ctx).database_url)


def application(ctx: typer.Context, spec: str | None = None) -> Conveyor:
    """The user's app named by `--app MODULE:ATTRIBUTE`, or a producer-only app."""
    if spec is None:
        return Conveyor(settings_for(ctx))
    return with_database_override(ctx, load_app(spec))


def with_database_override(ctx: typer.Context, app: Conveyor) -> Conveyor:
    """`app`, pointed at the store named by `--database-url` if one was given."""
    database_url = global_options(ctx).database_url
    if database_url is not None:
        # Validated like any setting (the error names --database-url); the rest of the
        # app's own settings are kept, since its code may have chosen them explicitly.
        checked = load_settings(database_url=database_url).database_url
        app.settings = app.settings.model_copy(update={"database_url": checked})
    return app


def run(app: Conveyor, work: Callable[[Conveyor], Coroutine[Any, Any, T]]) -> T:
    """Run `work(app)` on a fresh event loop (of the app's settings) and close the app's
    connections after it."""

    async def main() -> T:
        try:
            return await work(app)
        finally:
            await app.close()

    return event_loops.run(main(), app.settings.event_loop)


async def check_store(app: Conveyor) -> None:
    """Open the app's store and ping it: an unreachable or unmigrated store fails here."""
    await (await app.store()).ping()


def describe_database(url: str) -> str:
    """The store's URL for logs and messages, with any password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"
