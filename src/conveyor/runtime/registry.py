"""Tasks: user functions registered by name, with their options and argument schema.

    registry = TaskRegistry()

    @registry.task(queue="math", max_attempts=3, timeout=60)
    async def square_sum(numbers: list[float]) -> float: ...

    job = await square_sum.enqueue(numbers=[1, 2, 3])
    job = await square_sum.with_options(delay=10, priority=5).enqueue(numbers=[1])

`Task.enqueue` hands the arguments to the registry's `Submitter` (the Conveyor facade,
attached when the app is built), which validates and stores the job. The runtime never
imports the facade: the submitter is the seam.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, overload

from conveyor.core.errors import ConveyorError, DuplicateTask
from conveyor.core.job import DEFAULT_QUEUE, Job, JSONValue
from conveyor.core.retry import RetryPolicy
from conveyor.ports import TaskInfo
from conveyor.runtime.arguments import ArgumentModel
from conveyor.runtime.submission import PRIORITY_RANGE

P = ParamSpec("P")
R = TypeVar("R")

MAX_NAME_LENGTH = 200
MAX_ATTEMPTS_LIMIT = 1000  # the same bound a per-job max_attempts has


class Submitter(Protocol):
    """Where `Task.enqueue` sends jobs: the Conveyor facade implements it.

    `enqueue` spells out the options a task forwards (an implementation may accept more,
    with defaults), so that a facade with typed keyword options conforms.
    """

    async def enqueue(
        self,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        idempotency_key: str | None = None,
    ) -> Job: ...

    async def enqueue_many(
        self, task: str, args_list: Sequence[Mapping[str, Any]], **options: Any
    ) -> list[Job]: ...


class RegistryNotAttached(ConveyorError):
    """A task was enqueued through a registry that no Conveyor app has attached."""


class Task(Generic[P, R]):
    """A registered job handler. Calling it runs the function directly, in this process.

    To submit it as a job, `await task.enqueue(**arguments)`; for per-job options (delay,
    run_at, priority, queue, max_attempts, timeout, tags, idempotency_key),
    `await task.with_options(delay=10).enqueue(**arguments)`.
    """

    def __init__(
        self,
        function: Callable[P, R],
        *,
        registry: TaskRegistry,
        name: str,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        max_attempts: int | None = None,
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        check_name("task name", name)
        self.name = name
        self.queue = _checked_queue(name, queue)
        self.priority = _checked_priority(name, priority)
        self.max_attempts = _checked_max_attempts(name, max_attempts)
        self.timeout = _checked_timeout(name, timeout)
        self.retry_policy = _checked_retry(name, retry_policy)
        self.function = function
        self.is_async = _is_async(function)
        self._arguments = ArgumentModel.from_function(name, function)
        self.context_parameter = self._arguments.context_parameter
        self.args_schema: dict[str, Any] = self._arguments.json_schema()
        self.options: dict[str, JSONValue] = self._describe_options()
        self.registry = registry

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.function(*args, **kwargs)

    def validate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments as a job stores them; raises InvalidArguments naming each problem."""
        return self._arguments.validate(args)

    def bind(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Stored arguments as Python keyword arguments (a datetime parameter gets a datetime).

        The JobContext parameter is not included: the runner adds it.
        """
        return self._arguments.bind(args)

    def info(self) -> TaskInfo:
        return TaskInfo(
            name=self.name,
            queue=self.queue,
            priority=self.priority,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            args_schema=self.args_schema,
            options=self.options,
        )

    async def enqueue(self, /, **arguments: Any) -> Job:
        # `self` is positional-only so that a task may have a parameter called "self".
        return await self.registry.submitter.enqueue(self.name, arguments)

    async def enqueue_many(self, args_list: Sequence[Mapping[str, Any]]) -> list[Job]:
        """Submit one job per mapping of arguments, atomically."""
        return await self.registry.submitter.enqueue_many(self.name, args_list)

    def with_options(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        tags: Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> TaskEnqueuer:
        """This task with options for the jobs enqueued through the returned object.

        Options left out keep the task's own (or the app's defaults); they are checked by
        the submitter, like those given to `Conveyor.enqueue`.
        """
        given = {
            "queue": queue,
            "priority": priority,
            "delay": delay,
            "run_at": run_at,
            "max_attempts": max_attempts,
            "timeout": timeout,
            "tags": tags,
            "idempotency_key": idempotency_key,
        }
        return TaskEnqueuer(self, {key: value for key, value in given.items() if value is not None})

    def _describe_options(self) -> dict[str, JSONValue]:
        return {
            "queue": self.queue,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "timeout": self.timeout,
            "retry": _describe_retry(self.retry_policy),
            "runs_in": "event loop" if self.is_async else "thread pool",
        }

    def __repr__(self) -> str:
        return f"<Task {self.name!r} queue={self.queue!r}>"


class TaskEnqueuer:
    """A task with per-job options, from `Task.with_options()`."""

    def __init__(self, task: Task[..., Any], options: Mapping[str, Any]) -> None:
        self.task = task
        self.options = dict(options)

    async def enqueue(self, /, **arguments: Any) -> Job:
        submitter = self.task.registry.submitter
        return await submitter.enqueue(self.task.name, arguments, **self.options)

    async def enqueue_many(self, args_list: Sequence[Mapping[str, Any]]) -> list[Job]:
        submitter = self.task.registry.submitter
        return await submitter.enqueue_many(self.task.name, args_list, **self.options)


class TaskRegistry:
    """The tasks one application defines, by name."""

    def __init__(self, submitter: Submitter | None = None) -> None:
        self._tasks: dict[str, Task[..., Any]] = {}
        self._submitter = submitter

    @overload
    def task(self, function: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        function: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        max_attempts: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        function: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        max_attempts: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task: `@registry.task` or `@registry.task(queue=...)`.

        The default name is the function's module and qualified name. Raises TypeError or
        ValueError for a bad option or signature, DuplicateTask for a name already taken.
        """

        def register(handler: Callable[P, R]) -> Task[P, R]:
            created = Task(
                handler,
                registry=self,
                name=default_name(handler) if name is None else name,
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                timeout=timeout,
                retry_policy=retry,
            )
            return self._add(created)

        return register if function is None else register(function)

    def _add(self, task: Task[P, R]) -> Task[P, R]:
        existing = self._tasks.get(task.name)
        if existing is None:
            self._tasks[task.name] = task
            return task
        if existing.function is task.function and existing.options == task.options:
            # Decorating the same function twice with the same options is harmless.
            return cast("Task[P, R]", existing)
        raise DuplicateTask(task.name)

    def get(self, name: str) -> Task[..., Any] | None:
        return self._tasks.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task[..., Any]]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def names(self) -> list[str]:
        return list(self._tasks)

    def infos(self) -> list[TaskInfo]:
        return [task.info() for task in self._tasks.values()]

    def attach(self, submitter: Submitter) -> None:
        """Make `Task.enqueue` submit through `submitter` (the Conveyor app)."""
        self._submitter = submitter

    @property
    def submitter(self) -> Submitter:
        if self._submitter is None:
            raise RegistryNotAttached(
                "this task registry is not attached to a Conveyor app: define tasks with "
                "@app.task, or call registry.attach(app) before enqueueing"
            )
        return self._submitter


def _is_async(function: Callable[..., Any]) -> bool:
    # A callable object with `async def __call__` is a coroutine function in all but name.
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        type(function).__call__
    )


def default_name(function: Callable[..., Any]) -> str:
    module = getattr(function, "__module__", None) or "__main__"
    qualified = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{module}.{qualified}"


def check_name(what: str, name: object) -> None:
    """Task and queue names: non-empty, at most 200 characters, printable, no whitespace."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string, got {type(name).__name__}")
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} must be 1 to {MAX_NAME_LENGTH} characters, got {name!r}")
    if not name.isprintable() or any(character.isspace() for character in name):
        raise ValueError(f"{what} must not contain whitespace or control characters: {name!r}")


def _checked_queue(task: str, queue: str) -> str:
    check_name(f"task {task!r}: queue", queue)
    return queue


def _checked_priority(task: str, priority: int) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"task {task!r}: priority must be an integer, got {priority!r}")
    low, high = PRIORITY_RANGE
    if not low <= priority <= high:
        raise ValueError(
            f"task {task!r}: priority must be between {low} and {high}, got {priority}"
        )
    return priority


def _checked_max_attempts(task: str, max_attempts: int | None) -> int | None:
    if max_attempts is None:
        return None
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
        raise TypeError(f"task {task!r}: max_attempts must be an integer, got {max_attempts!r}")
    if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise ValueError(
            f"task {task!r}: max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, "
            f"got {max_attempts}"
        )
    return max_attempts


def _checked_timeout(task: str, timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"task {task!r}: timeout must be a number of seconds, got {timeout!r}")
    if not timeout > 0 or timeout == float("inf"):
        raise ValueError(f"task {task!r}: timeout must be a finite number > 0, got {timeout}")
    return float(timeout)


def _checked_retry(task: str, policy: RetryPolicy | None) -> RetryPolicy | None:
    if policy is not None and not isinstance(policy, RetryPolicy):
        raise TypeError(f"task {task!r}: retry must be a RetryPolicy, got {policy!r}")
    return policy


def _describe_retry(policy: RetryPolicy | None) -> dict[str, JSONValue] | None:
    if policy is None:
        return None
    return {
        "base_seconds": policy.base_seconds,
        "max_seconds": policy.max_seconds,
        "non_retryable": [
            f"{error.__module__}.{error.__qualname__}" for error in policy.non_retryable
        ],
    }
