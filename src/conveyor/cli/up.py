"""`conveyor up`: the whole platform in one command, for a developer's machine.

It migrates the store, makes sure an admin key exists, starts worker processes (each runs
the maintenance loops too) and serves the API in this process; once everything answers it
prints the URL, the admin key and a `curl` to paste. Ctrl-C stops it all gracefully.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from typing import Annotated

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from conveyor.cli.admin_key import ENVIRONMENT_VARIABLE, AdminKey, ensure_admin_key
from conveyor.cli.api import HostOption, PortOption
from conveyor.cli.facade import (
    check_store,
    describe_database,
    global_options,
    with_database_override,
)
from conveyor.cli.logs import LogLevel, LogLevelOption, configure_logging
from conveyor.cli.platform import Platform, PlatformPlan
from conveyor.cli.serving import base_url, bind_listener
from conveyor.cli.worker import WorkerOptions
from conveyor.client import Conveyor
from conveyor.core.errors import ConfigError
from conveyor.loading import load_app

DEFAULT_APP = "examples.app:app"
DEFAULT_WORKERS = 2
DEMO_TASK = "math.square_sum"
DEMO_ARGS = {"numbers": [1, 2, 3]}


@dataclass(frozen=True, slots=True)
class UpOptions:
    app_spec: str
    workers: int
    host: str
    port: int
    worker_command: list[str]
    has_demo_task: bool


def up(
    ctx: typer.Context,
    *,
    app_spec: Annotated[
        str | None,
        typer.Option(
            "--app",
            metavar="MODULE:ATTRIBUTE",
            help=f"The Conveyor app whose tasks the workers run (default: {DEFAULT_APP}).",
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes to run.")] = DEFAULT_WORKERS,
    host: HostOption = None,
    port: PortOption = None,
    log_level: LogLevelOption = LogLevel.INFO,
) -> None:
    """Run the API, worker processes and the monitor on one store, until Ctrl-C."""
    configure_logging(log_level)
    spec = app_spec or DEFAULT_APP
    user_app = with_database_override(ctx, _load(spec, is_default=app_spec is None))
    settings = user_app.settings
    _require_shared_database(settings.database_url)
    worker = WorkerOptions(
        app_spec=spec, queues=(), concurrency=None, with_monitor=True, log_level=log_level
    )
    options = UpOptions(
        app_spec=spec,
        workers=workers,
        host=settings.api_host if host is None else host,
        port=settings.api_port if port is None else port,
        worker_command=worker.child_command(global_options(ctx).database_url),
        has_demo_task=user_app.registry.get(DEMO_TASK) is not None,
    )
    # The API never runs task code: like `conveyor api`, it validates submissions against
    # the schemas the workers register, so it gets an app of its own without the tasks.
    # asyncio's own loop: uvloop cannot start children in process groups of their own.
    asyncio.run(run_up(Conveyor(settings), options))


def _load(spec: str, *, is_default: bool) -> Conveyor:
    try:
        return load_app(spec)
    except ConfigError as error:
        if not is_default:
            raise
        raise ConfigError(
            f"{error}; by default `conveyor up` runs the demo app in the examples/ folder of a "
            "Conveyor checkout: run it from there, or name your app with --app MODULE:ATTRIBUTE"
        ) from None


def _require_shared_database(database_url: str) -> None:
    try:
        url = make_url(database_url)
    except ArgumentError:
        return  # the store reports a bad URL when it opens it
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise ConfigError(
            "conveyor up runs its workers as separate processes, which cannot share an "
            "in-memory SQLite database: use sqlite:///path/to/file.db or postgresql://..."
        )


async def run_up(app: Conveyor, options: UpOptions) -> None:
    listener = bind_listener(options.host, options.port)
    try:
        # `up` is the one-command development platform, so it migrates PostgreSQL too
        # (safe to repeat); SQLite migrates itself when opened.
        await app.migrate()
        await check_store(app)
        admin_key = await ensure_admin_key(app)
        plan = PlatformPlan(worker_command=options.worker_command, workers=options.workers)
        platform = Platform(app, listener, plan)
        await platform.run(lambda: typer.echo(banner(app, options, listener, admin_key)))
    finally:
        listener.close()
        await app.close()


def banner(app: Conveyor, options: UpOptions, listener: socket.socket, key: AdminKey) -> str:
    """What a developer needs once the platform is up: where it is, a key, a first job."""
    url = base_url(listener)
    shown_key = f"${ENVIRONMENT_VARIABLE}" if key.from_environment else key.plaintext
    return "\n".join(
        [
            f"Conveyor is up: the API and {options.workers} worker process(es) "
            f"running {options.app_spec}",
            f"  store:      {describe_database(app.settings.database_url)}",
            f"  API:        {url}",
            f"  docs:       {url}/docs",
            f"  admin key:  {shown_key}  ({key.origin})",
            "",
            *_first_request(options, url, shown_key),
            "",
            "Press Ctrl-C to stop.",
        ]
    )


def _first_request(options: UpOptions, url: str, key: str) -> list[str]:
    # Double quotes, so that a $CONVEYOR_ADMIN_KEY in the header is expanded by the shell.
    authorization = f'-H "Authorization: Bearer {key}"'
    if not options.has_demo_task:
        return ["List the app's tasks:", f"  curl -s {url}/api/v1/tasks {authorization}"]
    body = json.dumps({"task": DEMO_TASK, "args": DEMO_ARGS})
    return [
        f"Submit a job ({DEMO_TASK}):",
        f"  curl -s {url}/api/v1/jobs {authorization} "
        f"-H 'Content-Type: application/json' -d '{body}'",
    ]
