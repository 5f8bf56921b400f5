"""The runner: one claimed job in, one Outcome out.

It finds the task, binds the stored arguments, calls the handler under the job's time
limit and turns what happened into a frozen core Outcome. It writes nothing: the worker
settles the outcome under the claim's fencing token.

Decisions worth knowing:

* Async handlers run on the loop `run` is awaited on; plain functions run in `executor`.
  Either way they see the caller's contextvars. The worker runs each attempt of an async
  task as one task of its handler loop (a thread and loop of its own, so that a handler
  blocking its loop cannot stall the worker: see handler_loop.py), binding and result
  conversion included. A thread cannot be killed, so when a plain function runs past its
  time limit the runner calls `context.mark_cancelled()` (cooperative code polls
  `ctx.cancelled`) and returns the JobTimeout outcome at once; the thread keeps its
  executor slot until the function returns, and its late result is discarded.
* `asyncio.CancelledError` propagates when the run's task was cancelled (lease lost, user
  cancel, shutdown): the worker decides that outcome. A CancelledError that a handler
  raises on its own, with no cancellation requested, is that attempt's failure.
* A handler's `SystemExit` is recorded as a failed attempt (following the retry policy)
  rather than stopping the worker and every other job in it. `KeyboardInterrupt` and other
  BaseExceptions propagate.
* An executor that was already shut down refuses the call; the job is `Released`, since a
  stopping worker is not the job's fault.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import math
import random
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from pydantic_core import to_jsonable_python

from conveyor.core.errors import InvalidArguments, JobTimeout, NonRetryableError, UnknownTask
from conveyor.core.job import ErrorInfo, Job
from conveyor.core.outcome import Completed, Failed, Outcome, Released
from conveyor.core.retry import RetryPolicy, decide
from conveyor.ports import Claim
from conveyor.runtime.context import JobContext
from conveyor.runtime.registry import Task, TaskRegistry
from conveyor.runtime.submission import json_problems

MAX_ERROR_MESSAGE_LENGTH = 4_000
MAX_TRACEBACK_LENGTH = 32_000


class ResultNotSerializable(NonRetryableError):
    """The handler returned a value that cannot be stored as JSON."""


class _ExecutorClosed(Exception):
    """The thread pool was shut down before the call could be scheduled."""


class Runner:
    """Runs claimed jobs with the tasks of one registry; see the module docstring."""

    def __init__(
        self,
        registry: TaskRegistry,
        *,
        executor: concurrent.futures.Executor,
        default_retry: RetryPolicy,
        default_timeout: float | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.registry = registry
        self.executor = executor
        self.default_retry = default_retry
        self.default_timeout = default_timeout
        self.jitter = jitter

    async def run(self, claim: Claim, context: JobContext) -> Outcome:
        """Run one attempt of `claim.job`; never raises for what the handler did."""
        job = claim.job
        task = self.registry.get(job.task)
        if task is None:
            return Failed(error_info(UnknownTask(job.task), job.attempt, with_traceback=False))
        try:
            arguments = task.bind(job.args)
        except InvalidArguments as error:
            return Failed(error_info(error, job.attempt, with_traceback=False))
        if task.context_parameter is not None:
            arguments[task.context_parameter] = context
        return await self._attempt(task, job, arguments, context)

    async def _attempt(
        self, task: Task[..., Any], job: Job, arguments: dict[str, Any], context: JobContext
    ) -> Outcome:
        try:
            result = await self._call_within_limit(task, job, arguments, context)
        except asyncio.CancelledError as error:
            if _cancellation_requested():
                context.mark_cancelled()
                raise
            return self._after_failure(task, job, error)
        except _ExecutorClosed:
            return Released()
        except (Exception, SystemExit) as error:
            return self._after_failure(task, job, error)
        return completed(result, job.attempt)

    async def _call_within_limit(
        self, task: Task[..., Any], job: Job, arguments: dict[str, Any], context: JobContext
    ) -> Any:
        limit = self.time_limit(task, job)
        if limit is None:  # no timer to arm: spare every job the timeout's machinery
            return await self._call(task, arguments)
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await self._call(task, arguments)
        except TimeoutError:
            if not deadline.expired():
                raise  # the handler's own TimeoutError, not the job's time limit
            context.mark_cancelled()
            raise JobTimeout(
                f"task {task.name!r} ran longer than its time limit of {limit:g} seconds"
            ) from None

    async def _call(self, task: Task[..., Any], arguments: Mapping[str, Any]) -> Any:
        if task.is_async:
            return await task.function(**arguments)
        return await self._call_in_thread(functools.partial(task.function, **arguments))

    async def _call_in_thread(self, call: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        in_context = functools.partial(contextvars.copy_context().run, call)
        try:
            future = loop.run_in_executor(self.executor, in_context)
        except RuntimeError as error:
            raise _ExecutorClosed from error
        return await future

    def runs_async(self, job: Job) -> bool:
        """Whether the job's task is an async function (an unknown task is not)."""
        task = self.registry.get(job.task)
        return task is not None and task.is_async

    def time_limit(self, task: Task[..., Any], job: Job) -> float | None:
        """The job's own timeout wins over its task's, which wins over the default."""
        for limit in (job.timeout, task.timeout, self.default_timeout):
            if limit is not None:
                return limit
        return None

    def _after_failure(self, task: Task[..., Any], job: Job, error: BaseException) -> Outcome:
        return decide(
            policy=task.retry_policy or self.default_retry,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            error=error,
            info=error_info(error, job.attempt, with_traceback=not isinstance(error, JobTimeout)),
            jitter=self.jitter(),
        )


_PLAIN_NUMBERS = (bool, int, float)


def _plain(result: Any) -> bool:
    """None, or a bool, int or finite float (not a subclass): JSON as it is."""
    if result is None:
        return True
    kind = type(result)
    return kind in _PLAIN_NUMBERS and (kind is not float or math.isfinite(result))


def _cancellation_requested() -> bool:
    current = asyncio.current_task()
    return current is None or current.cancelling() > 0


def completed(result: Any, attempt: int) -> Completed | Failed:
    """Completed with the result as JSON, or Failed when the result cannot be stored."""
    if _plain(result):
        return Completed(result)  # stored as it is: no conversion, nothing to check
    try:
        value = to_jsonable_python(result)
    except Exception as error:  # whatever the value's own serializer raised
        kind = type(result).__name__
        reason = f"returned a value of type {kind}, which cannot be stored as JSON: {error}"
        return _unserializable(reason, attempt)
    problems = json_problems(value, ("result",))
    if problems:
        return _unserializable(f"returned a result that cannot be stored: {problems[0]}", attempt)
    return Completed(value)


def _unserializable(reason: str, attempt: int) -> Failed:
    error = ResultNotSerializable(f"the task {reason}")
    return Failed(error_info(error, attempt, with_traceback=False))


def error_info(error: BaseException, attempt: int, *, with_traceback: bool = True) -> ErrorInfo:
    """A failed attempt as the store keeps it: type, message and (capped) traceback."""
    formatted = _traceback_text(error) if with_traceback else None
    return ErrorInfo(
        type=qualified_name(type(error)),
        message=_message(error),
        traceback=formatted,
        attempt=attempt,
    )


def qualified_name(kind: type[BaseException]) -> str:
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _message(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return f"the handler raised SystemExit({error.code!r})"
    try:
        text = str(error)
    except Exception:  # a broken __str__ must not lose the failure itself
        text = f"<unprintable {type(error).__name__}>"
    return _storable(text[:MAX_ERROR_MESSAGE_LENGTH])


def _traceback_text(error: BaseException) -> str:
    text = "".join(traceback.format_exception(error))
    # The end of a traceback (the raising frame) matters most, so keep the tail.
    return _storable(text[-MAX_TRACEBACK_LENGTH:])


def _storable(text: str) -> str:
    # Error text is stored as JSON: PostgreSQL jsonb rejects NUL, UTF-8 rejects lone surrogates.
    escaped = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return escaped.replace("\x00", "\\x00")
