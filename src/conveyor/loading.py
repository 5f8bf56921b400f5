"""Finding a user's Conveyor app from a `module:attribute` spec (`--app`)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from conveyor.client import Conveyor
from conveyor.core.errors import ConfigError


def load_app(spec: str) -> Conveyor:
    """Import `module:attribute` and return the Conveyor app it names, or say what is wrong."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(
            f"--app must look like MODULE:ATTRIBUTE (e.g. myapp.tasks:app), got {spec!r}"
        )
    # Like uvicorn and celery, resolve the module from the directory the command runs in.
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise ConfigError(
                f"--app {spec}: cannot import module {module_name!r} "
                f"(is it on PYTHONPATH or in the current directory?)"
            ) from None
        raise ConfigError(f"--app {spec}: importing {module_name!r} failed: {error}") from error
    app = getattr(module, attribute, None)
    if app is None:
        raise ConfigError(f"--app {spec}: module {module_name!r} has no attribute {attribute!r}")
    if not isinstance(app, Conveyor):
        raise ConfigError(
            f"--app {spec}: {attribute!r} is a {type(app).__name__}, not a Conveyor app"
        )
    return app
