"""Registering tasks: names, options, argument schemas, validation, binding, enqueueing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor.core.errors import DuplicateTask, InvalidArguments
from conveyor.core.job import Job, JobState
from conveyor.core.retry import RetryPolicy
from conveyor.ports import TaskInfo
from conveyor.runtime.context import JobContext
from conveyor.runtime.registry import RegistryNotAttached, TaskRegistry

NOW = datetime(2024, 5, 1, tzinfo=UTC)


class Opaque:
    """A type pydantic cannot build a JSON schema for."""


class RecordingSubmitter:
    """Stands in for the Conveyor facade; remembers what tasks asked it to enqueue."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []

    async def enqueue(
        self, task: str, args: Mapping[str, Any] | None = None, **options: Any
    ) -> Job:
        self.calls.append((task, dict(args or {}), options))
        return make_job(task, args or {})

    async def enqueue_many(
        self, task: str, args_list: Sequence[Mapping[str, Any]], **options: Any
    ) -> list[Job]:
        self.calls.append((task, [dict(args) for args in args_list], options))
        return [make_job(task, args) for args in args_list]


def make_job(task: str, args: Mapping[str, Any]) -> Job:
    return Job(
        id="job-1",
        task=task,
        queue="default",
        state=JobState.QUEUED,
        priority=0,
        args=args,
        attempt=0,
        max_attempts=5,
        timeout=None,
        run_at=NOW,
        created_at=NOW,
    )


# names -----------------------------------------------------------------------------


def test_the_default_name_is_the_module_and_qualified_name() -> None:
    registry = TaskRegistry()

    @registry.task
    def resize(width: int) -> int:
        return width

    assert (
        resize.name == f"{__name__}.test_the_default_name_is_the_module_and_qualified_name"
        ".<locals>.resize"
    )
    assert registry.get(resize.name) is resize


def test_an_explicit_name_and_options_are_kept() -> None:
    registry = TaskRegistry()
    policy = RetryPolicy(base_seconds=1, max_seconds=5, non_retryable=(KeyError,))

    @registry.task(
        name="math.square", queue="math", priority=5, max_attempts=3, timeout=60, retry=policy
    )
    async def square(number: float) -> float:
        return number * number

    assert (square.name, square.queue, square.priority) == ("math.square", "math", 5)
    assert (square.max_attempts, square.timeout, square.retry_policy) == (3, 60.0, policy)
    assert square.is_async
    assert square.options == {
        "queue": "math",
        "priority": 5,
        "max_attempts": 3,
        "timeout": 60.0,
        "retry": {"base_seconds": 1, "max_seconds": 5, "non_retryable": ["builtins.KeyError"]},
        "runs_in": "event loop",
    }


@pytest.mark.parametrize("name", ["", "has space", "tab\tname", "x" * 201, "bell\x07"])
def test_invalid_task_names_are_rejected(name: str) -> None:
    registry = TaskRegistry()
    with pytest.raises(ValueError, match="task name"):
        registry.task(name=name)(lambda: None)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts must be between 1"),
        ({"max_attempts": 2.5}, TypeError, "max_attempts must be an integer"),
        ({"timeout": 0}, ValueError, "timeout must be a finite number > 0"),
        ({"timeout": -1.0}, ValueError, "timeout must be a finite number > 0"),
        ({"timeout": "60"}, TypeError, "timeout must be a number"),
        ({"priority": "high"}, TypeError, "priority must be an integer"),
        ({"priority": True}, TypeError, "priority must be an integer"),
        ({"priority": 10**12}, ValueError, "priority must be between"),
        ({"queue": ""}, ValueError, "queue must be 1 to 200 characters"),
        ({"queue": "two words"}, ValueError, "queue must not contain whitespace"),
        ({"retry": 3}, TypeError, "retry must be a RetryPolicy"),
    ],
)
def test_bad_options_are_rejected_when_the_task_is_defined(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    registry = TaskRegistry()
    with pytest.raises(error, match=message):
        registry.task(name="bad", **options)(lambda: None)
    assert len(registry) == 0


def test_a_name_taken_by_another_function_is_a_duplicate() -> None:
    registry = TaskRegistry()
    registry.task(name="send")(lambda: 1)
    with pytest.raises(DuplicateTask, match="'send' is already registered"):
        registry.task(name="send")(lambda: 2)


def test_decorating_the_same_function_twice_returns_the_same_task() -> None:
    registry = TaskRegistry()

    def send() -> None:
        """Sends."""

    first = registry.task(name="send")(send)
    assert registry.task(name="send")(send) is first
    with pytest.raises(DuplicateTask):
        registry.task(name="send", queue="other")(send)


def test_the_registry_lists_its_tasks() -> None:
    registry = TaskRegistry()
    first = registry.task(name="first")(lambda: 1)
    second = registry.task(name="second", queue="q")(lambda: 2)
    assert list(registry) == [first, second]
    assert len(registry) == 2
    assert registry.names() == ["first", "second"]
    assert "first" in registry
    assert registry.get("missing") is None
    assert [info.name for info in registry.infos()] == ["first", "second"]


# signatures and schemas ------------------------------------------------------------


def test_the_schema_describes_each_argument() -> None:
    registry = TaskRegistry()

    @registry.task(name="stats")
    async def stats(numbers: list[float], rounds: int = 3, ctx: JobContext | None = None) -> None:
        """Computes."""

    assert stats.args_schema["type"] == "object"
    assert stats.args_schema["additionalProperties"] is False
    assert stats.args_schema["required"] == ["numbers"]
    properties = stats.args_schema["properties"]
    assert set(properties) == {"numbers", "rounds"}
    assert properties["numbers"]["type"] == "array"
    assert properties["numbers"]["items"] == {"type": "number"}
    assert properties["rounds"]["type"] == "integer"
    assert properties["rounds"]["default"] == 3


def test_the_job_context_parameter_is_injected_not_an_argument() -> None:
    registry = TaskRegistry()

    @registry.task(name="report")
    def report(rows: int, context: JobContext) -> None:
        """Reports."""

    assert report.context_parameter == "context"
    assert "context" not in report.args_schema["properties"]
    with pytest.raises(InvalidArguments, match="unexpected field 'context'"):
        report.validate({"rows": 1, "context": None})


class AsyncHandler:
    async def __call__(self, count: int) -> int:
        return count


def test_an_object_with_an_async_call_runs_on_the_event_loop() -> None:
    handler = TaskRegistry().task(name="object")(AsyncHandler())
    assert handler.is_async
    assert handler.options["runs_in"] == "event loop"
    assert handler.args_schema["required"] == ["count"]


def test_two_job_context_parameters_are_rejected() -> None:
    registry = TaskRegistry()

    def twice(first: JobContext, second: JobContext) -> None:
        """Cannot be called."""

    with pytest.raises(TypeError, match="at most one"):
        registry.task(twice)


def positional_only(value: int, /) -> None:
    """Cannot be called by keyword."""


def star_args(*values: int) -> None:
    """Cannot be called by keyword."""


def star_kwargs(**values: int) -> None:
    """Has no schema."""


@pytest.mark.parametrize(
    ("function", "problem"),
    [
        (positional_only, "'value' is positional-only"),
        (star_args, "'values' collects \\*args"),
        (star_kwargs, "'values' collects \\*\\*kwargs"),
    ],
)
def test_signatures_that_cannot_be_called_by_keyword_are_rejected(
    function: Any, problem: str
) -> None:
    with pytest.raises(TypeError, match=problem):
        TaskRegistry().task(function)


def test_an_annotation_with_no_json_form_names_the_parameter() -> None:
    def takes_opaque(thing: Opaque) -> None:
        """Cannot take JSON."""

    with pytest.raises(TypeError, match=r"parameter 'thing'.*cannot be validated from JSON"):
        TaskRegistry().task(takes_opaque)


def test_an_unresolvable_annotation_is_reported_at_definition() -> None:
    class Local:
        pass

    def takes_local(thing: Local) -> None:
        """Its annotation is a string that module globals cannot resolve."""

    with pytest.raises(TypeError, match="cannot resolve the annotation 'Local'"):
        TaskRegistry().task(takes_local)


def test_unannotated_parameters_accept_any_json() -> None:
    registry = TaskRegistry()

    @registry.task(name="loose")
    def loose(payload, count=2):  # type: ignore[no-untyped-def]
        return payload

    assert loose.validate({"payload": {"a": [1, None]}}) == {"payload": {"a": [1, None]}}
    assert loose.args_schema["required"] == ["payload"]


def test_parameters_may_share_names_with_pydantic_attributes() -> None:
    registry = TaskRegistry()

    @registry.task(name="shadow")
    def shadow(json: str, schema: int, model_config: bool = False) -> None:
        """Parameter names users pick without thinking of pydantic."""

    assert shadow.validate({"json": "a", "schema": 1}) == {"json": "a", "schema": 1}
    assert shadow.bind({"json": "a", "schema": 1, "model_config": True}) == {
        "json": "a",
        "schema": 1,
        "model_config": True,
    }


# validate and bind -----------------------------------------------------------------


registry = TaskRegistry()


@registry.task(name="reminders.send")
def send_reminder(user_id: int, at: datetime, channels: list[str] = ["email"]) -> str:  # noqa: B006
    return f"{user_id}@{at.isoformat()}"


def test_validate_returns_json_ready_arguments_without_defaults() -> None:
    stored = send_reminder.validate({"user_id": "42", "at": NOW})
    assert stored == {"user_id": 42, "at": "2024-05-01T00:00:00Z"}


def test_bind_returns_python_values_for_the_call() -> None:
    bound = send_reminder.bind({"user_id": 42, "at": "2024-05-01T00:00:00Z"})
    assert bound == {"user_id": 42, "at": NOW}
    assert isinstance(bound["at"], datetime)


def test_validate_names_every_bad_field() -> None:
    with pytest.raises(InvalidArguments) as raised:
        send_reminder.validate({"at": "not a date", "channels": "email", "urgent": True})
    locations = {problem.location for problem in raised.value.problems}
    assert locations == {("user_id",), ("at",), ("channels",), ("urgent",)}


def test_validate_rejects_values_that_cannot_be_stored() -> None:
    with pytest.raises(InvalidArguments, match="NaN"):
        TaskRegistry().task(name="anything")(lambda value: value).validate({"value": float("nan")})
    with pytest.raises(InvalidArguments, match="value: a value of type Opaque cannot be stored"):
        TaskRegistry().task(name="anything")(lambda value: value).validate({"value": Opaque()})


def test_calling_a_task_runs_the_function_directly() -> None:
    assert send_reminder(7, NOW) == "7@2024-05-01T00:00:00+00:00"


def test_info_describes_the_task_for_other_processes() -> None:
    assert send_reminder.info() == TaskInfo(
        name="reminders.send",
        queue="default",
        priority=0,
        max_attempts=None,
        timeout=None,
        args_schema=send_reminder.args_schema,
        options=send_reminder.options,
    )


# enqueueing ------------------------------------------------------------------------


async def test_enqueue_submits_the_arguments_through_the_attached_submitter() -> None:
    submitter = RecordingSubmitter()
    producer = TaskRegistry(submitter)

    @producer.task(name="ping")
    async def ping(host: str) -> None:
        """Pings."""

    job = await ping.enqueue(host="example.org")
    jobs = await ping.enqueue_many([{"host": "a"}, {"host": "b"}])
    assert job.task == "ping"
    assert len(jobs) == 2
    assert submitter.calls == [
        ("ping", {"host": "example.org"}, {}),
        ("ping", [{"host": "a"}, {"host": "b"}], {}),
    ]


async def test_with_options_passes_per_job_options() -> None:
    submitter = RecordingSubmitter()
    producer = TaskRegistry()
    producer.attach(submitter)

    @producer.task(name="ping")
    async def ping(host: str) -> None:
        """Pings."""

    later = ping.with_options(delay=10, priority=5, idempotency_key="k", tags=["a"])
    await later.enqueue(host="x")
    await later.enqueue_many([{"host": "y"}])
    options = {"delay": 10, "priority": 5, "idempotency_key": "k", "tags": ["a"]}
    assert submitter.calls == [
        ("ping", {"host": "x"}, options),
        ("ping", [{"host": "y"}], options),
    ]


async def test_a_parameter_called_self_can_be_enqueued() -> None:
    submitter = RecordingSubmitter()
    producer = TaskRegistry(submitter)

    @producer.task(name="reflect")
    def reflect(self: str) -> str:
        return self

    await reflect.enqueue(self="mirror")
    await reflect.with_options(priority=1).enqueue(self="mirror")
    assert [call[1] for call in submitter.calls] == [{"self": "mirror"}, {"self": "mirror"}]


async def test_enqueue_without_an_app_explains_what_to_do() -> None:
    with pytest.raises(RegistryNotAttached, match="attach"):
        await send_reminder.enqueue(user_id=1, at=NOW)
