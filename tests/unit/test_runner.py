"""The runner turns one claimed job into an Outcome: results, retries, timeouts, failures.

Every test taking `runner` runs twice: with async handlers on the caller's own loop, and on
a handler loop (as in a worker); the outcomes must be the same."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NoReturn

import pytest
from pydantic import BaseModel

from conveyor.core.errors import NonRetryableError, Retry
from conveyor.core.job import Job, JobState, Progress
from conveyor.core.outcome import Completed, Failed, Outcome, Released, Retrying
from conveyor.core.retry import RetryPolicy
from conveyor.ports import Claim
from conveyor.runtime.context import JobContext
from conveyor.runtime.handler_loop import HandlerLoop
from conveyor.runtime.registry import TaskRegistry
from conveyor.runtime.runner import Runner

NOW = datetime(2024, 5, 1, tzinfo=UTC)
DEFAULT_RETRY = RetryPolicy(base_seconds=2.0, max_seconds=600.0)
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")

registry = TaskRegistry()


class Summary(BaseModel):
    total: float
    at: datetime


class Permanent(Exception):
    pass


@registry.task(name="square_sum")
async def square_sum(numbers: list[float]) -> float:
    return sum(number * number for number in numbers)


@registry.task(name="thread_id")
def thread_id() -> int:
    return threading.get_ident()


@registry.task(name="read_request_id")
def read_request_id() -> str:
    return request_id.get()


@registry.task(name="summary")
def summary(total: float) -> Summary:
    return Summary(total=total, at=NOW)


@registry.task(name="explode")
def explode(message: str) -> NoReturn:
    raise ValueError(message)


@registry.task(name="retry_in")
async def retry_in(seconds: float) -> NoReturn:
    raise Retry(delay=seconds)


@registry.task(name="refuse")
async def refuse() -> NoReturn:
    raise NonRetryableError("the input can never work")


@registry.task(name="permanent", retry=RetryPolicy(non_retryable=(Permanent,)))
async def permanent() -> NoReturn:
    raise Permanent("never again")


@registry.task(name="hang", timeout=60)
async def hang(context: JobContext) -> None:
    await asyncio.Event().wait()


@registry.task(name="wait_forever")
async def wait_forever(context: JobContext) -> None:
    context.progress(0, "started")
    await asyncio.Event().wait()


@registry.task(name="block")
def block(context: JobContext) -> str:
    # Cooperative: returns as soon as the runner gives up on it.
    context.wait_cancelled(30)
    return "late"


@registry.task(name="own_timeout")
async def own_timeout() -> NoReturn:
    raise TimeoutError("the upstream API timed out")


@registry.task(name="opaque")
def opaque() -> object:
    return object()


@registry.task(name="not_a_number")
def not_a_number() -> float:
    return float("nan")


@registry.task(name="report_sync")
def report_sync(context: JobContext) -> str:
    context.progress(25, "reading")
    context.progress(100, "done")
    return context.job_id


@registry.task(name="report_async")
async def report_async(context: JobContext) -> int:
    context.progress(50, "halfway")
    return context.attempt


@registry.task(name="exit")
def exit_task() -> None:
    sys.exit(3)


@registry.task(name="cancel_itself")
async def cancel_itself() -> NoReturn:
    raise asyncio.CancelledError


@registry.task(name="interrupt")
async def interrupt() -> NoReturn:
    raise KeyboardInterrupt


@registry.task(name="exit_async")
async def exit_async() -> None:
    raise SystemExit(4)


@registry.task(name="async_thread_id")
async def async_thread_id() -> int:
    return threading.get_ident()


@registry.task(name="read_request_id_async")
async def read_request_id_async() -> str:
    return request_id.get()


@registry.task(name="stubborn")
async def stubborn(context: JobContext) -> str:
    context.progress(0, "started")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        return "finished anyway"
    return "never"


cleanups: list[str] = []


@registry.task(name="clean_up_when_cancelled")
async def clean_up_when_cancelled(context: JobContext) -> None:
    context.progress(0, "started")
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(0.01)
        cleanups.append(context.job_id)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="handler") as pool:
        yield pool


class RunnerOnHandlerLoop(Runner):
    """Runs each attempt of an async task as one task of a handler loop, as a worker does."""

    def __init__(self, handler_loop: HandlerLoop, executor: ThreadPoolExecutor) -> None:
        super().__init__(registry, executor=executor, default_retry=DEFAULT_RETRY)
        self.handler_loop = handler_loop

    async def run(self, claim: Claim, context: JobContext) -> Outcome:
        if not self.runs_async(claim.job):
            return await super().run(claim, context)
        attempt = functools.partial(Runner.run, self, claim, context)
        return await self.handler_loop.submit(attempt).result()


@pytest.fixture(params=["current loop", "handler loop"])
async def runner(
    request: pytest.FixtureRequest, executor: ThreadPoolExecutor
) -> AsyncIterator[Runner]:
    if request.param == "current loop":
        yield Runner(registry, executor=executor, default_retry=DEFAULT_RETRY)
        return
    handler_loop = HandlerLoop()
    handler_loop.start()
    yield RunnerOnHandlerLoop(handler_loop, executor)
    assert await handler_loop.stop(timeout=30)


def make_claim(
    task: str,
    args: dict[str, Any] | None = None,
    *,
    attempt: int = 1,
    max_attempts: int = 3,
    timeout: float | None = None,
) -> Claim:
    job = Job(
        id=f"job-{task}",
        task=task,
        queue="default",
        state=JobState.RUNNING,
        priority=0,
        args=args or {},
        attempt=attempt,
        max_attempts=max_attempts,
        timeout=timeout,
        run_at=NOW,
        created_at=NOW,
    )
    return Claim(job=job, token="token-1")


async def run(
    runner: Runner, claim: Claim, reports: list[Progress] | None = None
) -> tuple[Outcome, JobContext]:
    sink = reports if reports is not None else []
    context = JobContext(claim.job, report_progress=sink.append)
    return await runner.run(claim, context), context


# success ---------------------------------------------------------------------------


async def test_an_async_handler_completes_with_its_result(runner: Runner) -> None:
    outcome, _ = await run(runner, make_claim("square_sum", {"numbers": [1, 2, 3]}))
    assert outcome == Completed(14.0)


async def test_a_plain_function_runs_in_a_worker_thread(runner: Runner) -> None:
    outcome, _ = await run(runner, make_claim("thread_id"))
    assert isinstance(outcome, Completed)
    assert outcome.result != threading.get_ident()


@pytest.mark.parametrize("task", ["read_request_id", "read_request_id_async"])
async def test_a_handler_sees_the_callers_context_variables(runner: Runner, task: str) -> None:
    request_id.set("req-42")
    outcome, _ = await run(runner, make_claim(task))
    assert outcome == Completed("req-42")


async def test_only_async_tasks_count_as_async(runner: Runner) -> None:
    assert runner.runs_async(make_claim("square_sum").job)
    assert not runner.runs_async(make_claim("thread_id").job)
    assert not runner.runs_async(make_claim("no_such_task").job)


async def test_results_are_stored_as_json(runner: Runner) -> None:
    outcome, _ = await run(runner, make_claim("summary", {"total": 3}))
    assert outcome == Completed({"total": 3.0, "at": "2024-05-01T00:00:00Z"})


# failures and retries --------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
async def test_an_exception_is_retried_after_a_bounded_backoff(
    runner: Runner, attempt: int
) -> None:
    claim = make_claim("explode", {"message": "disk full"}, attempt=attempt, max_attempts=5)
    outcome, _ = await run(runner, claim)
    assert isinstance(outcome, Retrying)
    assert 0 <= outcome.delay <= DEFAULT_RETRY.base_seconds * 2 ** (attempt - 1)
    assert (outcome.error.type, outcome.error.message) == ("ValueError", "disk full")
    assert outcome.error.attempt == attempt
    assert outcome.error.traceback is not None
    assert "raise ValueError(message)" in outcome.error.traceback


async def test_the_backoff_uses_the_runners_jitter(executor: ThreadPoolExecutor) -> None:
    runner = Runner(registry, executor=executor, default_retry=DEFAULT_RETRY, jitter=lambda: 0.5)
    claim = make_claim("explode", {"message": "x"}, attempt=3, max_attempts=5)
    outcome, _ = await run(runner, claim)
    assert isinstance(outcome, Retrying)
    assert outcome.delay == 4.0


async def test_the_last_attempt_fails_into_the_dead_letter_queue(runner: Runner) -> None:
    outcome, _ = await run(runner, make_claim("explode", {"message": "x"}, attempt=3))
    assert isinstance(outcome, Failed)
    assert outcome.error.attempt == 3


async def test_retry_with_a_delay_is_honoured(runner: Runner) -> None:
    outcome, _ = await run(runner, make_claim("retry_in", {"seconds": 7}))
    assert isinstance(outcome, Retrying)
    assert outcome.delay == 7
    assert outcome.error.type == "conveyor.core.errors.Retry"


async def test_a_non_retryable_error_fails_on_the_first_attempt(runner: Runner) -> None:
    outcome, _ = await run(runner, make_claim("refuse", attempt=1, max_attempts=5))
    assert isinstance(outcome, Failed)
    assert outcome.error.message == "the input can never work"


async def test_the_tasks_retry_policy_wins_over_the_default(runner: Runner) -> None:
    outcome, _ = await run(runner, make_claim("permanent", attempt=1, max_attempts=5))
    assert isinstance(outcome, Failed)
    assert outcome.error.type == f"{__name__}.Permanent"


async def test_a_handlers_own_timeout_error_is_an_ordinary_failure(runner: Runner) -> None:
    outcome, _ = await run(runner, make_claim("own_timeout"))
    assert isinstance(outcome, Retrying)
    assert outcome.error.type == "TimeoutError"


@pytest.mark.parametrize(("task", "code"), [("exit", 3), ("exit_async", 4)])
async def test_sys_exit_in_a_handler_fails_the_attempt_not_the_worker(
    runner: Runner, task: str, code: int
) -> None:
    outcome, _ = await run(runner, make_claim(task))
    assert isinstance(outcome, Retrying)
    assert outcome.error.type == "SystemExit"
    assert outcome.error.message == f"the handler raised SystemExit({code})"


async def test_a_cancelled_error_raised_by_the_handler_itself_is_a_failure(
    runner: Runner,
) -> None:
    outcome, _ = await run(runner, make_claim("cancel_itself"))
    assert isinstance(outcome, Retrying)
    assert outcome.error.type == "asyncio.exceptions.CancelledError"


# timeouts --------------------------------------------------------------------------


async def test_an_async_handler_past_its_time_limit_times_out(runner: Runner) -> None:
    outcome, context = await run(runner, make_claim("hang", timeout=0.05))
    assert isinstance(outcome, Retrying)
    assert outcome.error.type == "conveyor.core.errors.JobTimeout"
    assert "time limit of 0.05 seconds" in outcome.error.message
    assert context.cancelled


async def test_a_plain_function_past_its_time_limit_is_told_to_stop(runner: Runner) -> None:
    outcome, context = await run(runner, make_claim("block", timeout=0.05, max_attempts=1))
    assert isinstance(outcome, Failed)
    assert outcome.error.type == "conveyor.core.errors.JobTimeout"
    assert context.cancelled


def test_the_jobs_timeout_wins_over_the_tasks_and_the_default(
    executor: ThreadPoolExecutor,
) -> None:
    runner = Runner(registry, executor=executor, default_retry=DEFAULT_RETRY, default_timeout=5)
    assert runner.time_limit(hang, make_claim("hang", timeout=1).job) == 1
    assert runner.time_limit(hang, make_claim("hang").job) == 60
    assert runner.time_limit(square_sum, make_claim("square_sum").job) == 5


# jobs that cannot run --------------------------------------------------------------


async def test_an_unknown_task_fails_without_retry(runner: Runner) -> None:
    outcome, _ = await run(runner, make_claim("no.such.task", attempt=1, max_attempts=5))
    assert isinstance(outcome, Failed)
    assert outcome.error.type == "conveyor.core.errors.UnknownTask"
    assert "'no.such.task'" in outcome.error.message


async def test_arguments_that_do_not_match_the_signature_fail_without_retry(
    runner: Runner,
) -> None:
    claim = make_claim("square_sum", {"numbers": "many"}, attempt=1, max_attempts=5)
    outcome, _ = await run(runner, claim)
    assert isinstance(outcome, Failed)
    assert outcome.error.type == "conveyor.core.errors.InvalidArguments"
    assert "numbers: expected array, got string" in outcome.error.message


@pytest.mark.parametrize(("task", "problem"), [("opaque", "object"), ("not_a_number", "NaN")])
async def test_a_result_that_cannot_be_stored_fails_without_retry(
    runner: Runner, task: str, problem: str
) -> None:
    outcome, _ = await run(runner, make_claim(task, attempt=1, max_attempts=5))
    assert isinstance(outcome, Failed)
    assert outcome.error.type == "conveyor.runtime.runner.ResultNotSerializable"
    assert problem in outcome.error.message


async def test_a_shut_down_executor_releases_the_job(executor: ThreadPoolExecutor) -> None:
    runner = Runner(registry, executor=executor, default_retry=DEFAULT_RETRY)
    executor.shutdown()
    outcome, _ = await run(runner, make_claim("thread_id"))
    assert outcome == Released()


# context ---------------------------------------------------------------------------


async def test_progress_from_a_plain_function_reaches_the_worker(runner: Runner) -> None:
    reports: list[Progress] = []
    outcome, _ = await run(runner, make_claim("report_sync"), reports)
    assert outcome == Completed("job-report_sync")
    assert reports == [Progress(25.0, "reading"), Progress(100.0, "done")]


async def test_the_context_is_injected_into_async_handlers(runner: Runner) -> None:
    reports: list[Progress] = []
    outcome, _ = await run(runner, make_claim("report_async", attempt=2), reports)
    assert outcome == Completed(2)
    assert reports == [Progress(50.0, "halfway")]


# cancellation ----------------------------------------------------------------------


async def run_and_cancel(runner: Runner, task: str) -> tuple[asyncio.Task[Outcome], JobContext]:
    """Start a run, wait until its handler reports progress, then cancel the run."""
    started = asyncio.Event()

    def report(progress: Progress) -> None:
        started.set()

    claim = make_claim(task)
    context = JobContext(claim.job, report_progress=report)
    running = asyncio.create_task(runner.run(claim, context))
    await asyncio.wait_for(started.wait(), timeout=30)
    running.cancel()
    return running, context


async def test_cancelling_the_run_propagates_and_tells_the_handler(runner: Runner) -> None:
    running, context = await run_and_cancel(runner, "wait_forever")
    with pytest.raises(asyncio.CancelledError):
        await running
    assert context.cancelled


async def test_cancelling_waits_for_the_handler_to_unwind(runner: Runner) -> None:
    running, context = await run_and_cancel(runner, "clean_up_when_cancelled")
    with pytest.raises(asyncio.CancelledError):
        await running
    assert cleanups[-1] == context.job_id


async def test_a_handler_that_catches_the_cancellation_keeps_its_outcome(
    runner: Runner,
) -> None:
    running, _ = await run_and_cancel(runner, "stubborn")
    assert await running == Completed("finished anyway")


def test_keyboard_interrupt_is_not_turned_into_an_outcome(runner: Runner) -> None:
    claim = make_claim("interrupt")
    context = JobContext(claim.job, report_progress=lambda progress: None)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(runner.run(claim, context))
