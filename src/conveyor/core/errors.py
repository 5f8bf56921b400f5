"""The ConveyorError tree, and the exceptions a task handler may raise to steer retries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose."""


class ConfigError(ConveyorError):
    """A setting is invalid; the message names the variable or flag."""


class StoreUnavailable(ConveyorError):
    """The job store cannot be reached."""


class JobNotFound(ConveyorError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class InvalidTransition(ConveyorError):
    """The job is not in a state the requested action applies to."""

    def __init__(self, job_id: str, action: str, state: str) -> None:
        super().__init__(f"cannot {action} job {job_id!r}: it is {state}")
        self.job_id = job_id
        self.action = action
        self.state = state


class UnknownTask(ConveyorError):
    def __init__(self, task: str) -> None:
        super().__init__(
            f"unknown task {task!r}: no worker has registered it and it is not defined in this app"
        )
        self.task = task


class DuplicateTask(ConveyorError):
    def __init__(self, task: str) -> None:
        super().__init__(f"task {task!r} is already registered")
        self.task = task


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of a submission: where it is and what is wrong."""

    location: tuple[str | int, ...]
    message: str

    def __str__(self) -> str:
        where = ".".join(str(part) for part in self.location) or "(arguments)"
        return f"{where}: {self.message}"


class InvalidArguments(ConveyorError):
    def __init__(self, task: str, problems: Sequence[FieldError]) -> None:
        detail = "; ".join(str(problem) for problem in problems)
        super().__init__(f"invalid arguments for task {task!r}: {detail}")
        self.task = task
        self.problems = tuple(problems)


class InvalidSubmission(ConveyorError):
    """A submission's options (not its arguments) are invalid."""

    def __init__(self, problems: Sequence[FieldError]) -> None:
        super().__init__("invalid job: " + "; ".join(str(problem) for problem in problems))
        self.problems = tuple(problems)


class ArgumentsTooLarge(InvalidSubmission):
    """A job's arguments exceed CONVEYOR_MAX_ARGS_BYTES (HTTP 413, not 422)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            [FieldError(("args",), f"arguments are {size} bytes; the limit is {limit}")]
        )
        self.size = size
        self.limit = limit


class IdempotencyConflict(ConveyorError):
    """An idempotency key was reused for a different submission."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for job {job_id!r} with a different "
            "submission; use a new key for a new job"
        )
        self.key = key
        self.job_id = job_id


class ApiKeyNotFound(ConveyorError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key with id {key_id!r}")
        self.key_id = key_id


class JobFailed(ConveyorError):
    """Raised by wait() when the job ended `failed` or `cancelled`."""

    def __init__(self, job_id: str, state: str, error: str | None) -> None:
        reason = f": {error}" if error else ""
        super().__init__(f"job {job_id!r} ended {state}{reason}")
        self.job_id = job_id
        self.state = state
        self.error = error


# Raised inside handlers ---------------------------------------------------------------


class Retry(ConveyorError):
    """Raise in a handler to retry after `delay` seconds instead of the policy's backoff.

    It still uses up an attempt; the last attempt goes to `failed` as usual.
    """

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        if delay is not None and delay < 0:
            raise ValueError("Retry delay must be >= 0 seconds")
        super().__init__(reason)
        self.delay = delay


class NonRetryableError(ConveyorError):
    """Raise (or subclass) in a handler to fail the job at once, whatever attempts remain."""


class JobTimeout(ConveyorError, TimeoutError):
    """The attempt ran past its task's timeout. It follows the retry policy."""


class LeaseLost(ConveyorError):
    """The worker no longer holds the job's lease; its run was stopped locally."""
