"""The one place where an error becomes a message on stderr and an exit code.

Commands raise; they never catch to print. `ConveyorGroup` (the root command's class)
catches every ConveyorError that escapes a command, prints what `describe` says and exits
with its code, so no expected failure ever shows a traceback.

Exit codes: 0 success; 1 the command was well formed but the operation failed (no such
job, a job not in a state the action applies to, the store unreachable, a job that ended
failed); 2 the command line or the configuration is wrong (bad flag, bad --app, unknown
task, arguments that do not match the task, an invalid setting).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperGroup

from conveyor.core.errors import (
    ConfigError,
    ConveyorError,
    DuplicateTask,
    FieldError,
    InvalidArguments,
    InvalidSubmission,
    UnknownTask,
)

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandFailed(ConveyorError):
    """A command's own failure that is not one of the core errors (e.g. a wait timed out)."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class InvalidInput(ConveyorError):
    """Invalid values given to a command that are not job options: `what` names them."""

    def __init__(self, what: str, problems: Sequence[FieldError]) -> None:
        super().__init__(f"invalid {what}: " + "; ".join(str(problem) for problem in problems))
        self.what = what
        self.problems = tuple(problems)


@contextmanager
def invalid_input(what: str) -> Iterator[None]:
    """Report the facade's InvalidSubmission as invalid `what` (an API key, a queue name),
    since the facade's checks of names are shared with job submissions."""
    try:
        yield
    except InvalidSubmission as error:
        raise InvalidInput(what, error.problems) from None


@dataclass(frozen=True, slots=True)
class Failure:
    lines: tuple[str, ...]
    exit_code: int


def describe(error: ConveyorError) -> Failure:
    """What to tell the user about `error`, and which exit code to end with."""
    match error:
        case InvalidArguments():
            return _listing(f"invalid arguments for task {error.task!r}:", error.problems)
        case InvalidSubmission():
            return _listing("invalid job options:", error.problems)
        case InvalidInput():
            return _listing(f"invalid {error.what}:", error.problems)
        case ConfigError() | UnknownTask() | DuplicateTask():
            return Failure((str(error),), EXIT_USAGE)
        case CommandFailed():
            return Failure(tuple(str(error).splitlines()), error.exit_code)
        case _:
            return Failure((str(error),), EXIT_FAILURE)


def _listing(heading: str, problems: tuple[FieldError, ...]) -> Failure:
    # One line per field: a user fixing several mistakes sees them all at once.
    return Failure((heading, *(f"  {problem}" for problem in problems)), EXIT_USAGE)


def report(error: ConveyorError) -> int:
    failure = describe(error)
    first, *rest = failure.lines or ("failed",)
    typer.echo(f"error: {first}", err=True)
    for line in rest:
        typer.echo(line, err=True)
    return failure.exit_code


class ConveyorGroup(TyperGroup):
    """The root command: runs the chosen subcommand and turns its errors into exit codes."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ConveyorError as error:
            raise typer.Exit(report(error)) from None
