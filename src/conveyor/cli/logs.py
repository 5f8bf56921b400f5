"""Logging for the long-running commands (worker, monitor, api, up): one handler on stderr."""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.logging import RichHandler

HANDLER_NAME = "conveyor-cli"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


LogLevelOption = Annotated[
    LogLevel, typer.Option("--log-level", case_sensitive=False, help="Least severe to log.")
]


def configure_logging(level: LogLevel) -> None:
    """Log to stderr: with Rich on a terminal, as plain timestamped lines otherwise."""
    handler: logging.Handler
    if sys.stderr.isatty():
        handler = RichHandler(show_path=False, rich_tracebacks=True)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    # Replace only our own handler, so a host's logging setup (pytest's, say) stays intact.
    for existing in [item for item in root.handlers if item.get_name() == HANDLER_NAME]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if level is not LogLevel.DEBUG:
        # Alembic narrates every schema check at INFO; that is noise in a worker's log.
        logging.getLogger("alembic").setLevel(logging.WARNING)
