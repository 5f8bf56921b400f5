"""Conveyor: durable asynchronous jobs for Python.

    from conveyor import Conveyor, JobContext

    app = Conveyor()

    @app.task(name="math.square_sum", queue="math")
    async def square_sum(numbers: list[float]) -> float:
        return sum(n * n for n in numbers)

Everything a user imports is here; the submodules are the implementation.
"""

from __future__ import annotations

from conveyor.client import Conveyor
from conveyor.config import Settings
from conveyor.core.errors import (
    ApiKeyNotFound,
    ArgumentsTooLarge,
    ConfigError,
    ConveyorError,
    DuplicateTask,
    FieldError,
    IdempotencyConflict,
    InvalidArguments,
    InvalidSubmission,
    InvalidTransition,
    JobFailed,
    JobNotFound,
    JobTimeout,
    LeaseLost,
    NonRetryableError,
    Retry,
    StoreUnavailable,
    UnknownTask,
)
from conveyor.core.job import ErrorInfo, Job, JobState, NewJob, Progress
from conveyor.core.retry import RetryPolicy
from conveyor.runtime.context import JobContext
from conveyor.sync import blocking

__all__ = [
    "ApiKeyNotFound",
    "ArgumentsTooLarge",
    "ConfigError",
    "Conveyor",
    "ConveyorError",
    "DuplicateTask",
    "ErrorInfo",
    "FieldError",
    "IdempotencyConflict",
    "InvalidArguments",
    "InvalidSubmission",
    "InvalidTransition",
    "Job",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "JobState",
    "JobTimeout",
    "LeaseLost",
    "NewJob",
    "NonRetryableError",
    "Progress",
    "Retry",
    "RetryPolicy",
    "Settings",
    "StoreUnavailable",
    "UnknownTask",
    "blocking",
]
