"""`conveyor api`: the HTTP API alone, in this process, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated

import typer

from conveyor.cli.facade import check_store, describe_database, global_options
from conveyor.cli.logs import LogLevel, LogLevelOption, configure_logging
from conveyor.cli.serving import ApiServer, base_url, bind_listener
from conveyor.client import Conveyor
from conveyor.config import Settings, load_settings
from conveyor.core.errors import StoreUnavailable
from conveyor.runtime import event_loops
from conveyor.runtime.signals import install_signal_handlers

logger = logging.getLogger("conveyor.cli")

HostOption = Annotated[
    str | None,
    typer.Option(metavar="HOST", help="Address to listen on (default: CONVEYOR_API_HOST)."),
]
PortOption = Annotated[
    int | None,
    typer.Option(
        min=0, max=65535, help="Port to listen on; 0 picks a free one (default: CONVEYOR_API_PORT)."
    ),
]


def api(
    ctx: typer.Context,
    *,
    host: HostOption = None,
    port: PortOption = None,
    log_level: LogLevelOption = LogLevel.INFO,
) -> None:
    """Run the HTTP API (and its OpenAPI docs at /docs) until SIGTERM or Ctrl-C."""
    configure_logging(log_level)
    settings = load_settings(
        database_url=global_options(ctx).database_url, api_host=host, api_port=port
    )
    event_loops.run(serve_api(settings), settings.event_loop)


async def serve_api(settings: Settings) -> None:
    """Serve the API for `settings` until a signal asks it to stop."""
    # Imported here: FastAPI is slow to import, and no other command (nor any worker
    # process) needs it.
    from conveyor.api.app import create_app

    listener = bind_listener(settings.api_host, settings.api_port)
    app = Conveyor(settings)
    try:
        await _check_store(app)
        server = ApiServer(create_app(settings, conveyor=app), listener)
        uninstall = install_signal_handlers(server)
        try:
            url = base_url(listener)
            logger.info(
                "API on %s (docs: %s/docs), store %s",
                url,
                url,
                describe_database(settings.database_url),
            )
            await server.serve()
        finally:
            uninstall()
    finally:
        listener.close()
        await app.close()
    logger.info("API stopped")


async def _check_store(app: Conveyor) -> None:
    """Stop at a store that is behind its schema (a configuration mistake), with one line
    instead of a traceback from the server's startup. An unreachable store is not fatal:
    the app logs it and answers 503 (and /health/ready says why) until the store is back."""
    with contextlib.suppress(StoreUnavailable):
        await check_store(app)
