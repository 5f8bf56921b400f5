"""Argument errors name the field and the problem, alike from signatures and from schemas."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel

from conveyor.core.errors import FieldError, InvalidArguments
from conveyor.runtime.registry import Task, TaskRegistry
from conveyor.runtime.validation import validate_against_schema


class Point(BaseModel):
    x: float
    y: float


registry = TaskRegistry()


@registry.task(name="geometry.plot")
def plot(points: list[Point], label: str, scale: float = 1.0, when: datetime | None = None) -> None:
    """A task whose schema both validation paths share."""


def schema_problems(task: Task[..., Any], args: Mapping[str, Any]) -> set[FieldError]:
    with pytest.raises(InvalidArguments) as raised:
        validate_against_schema(task.name, task.args_schema, args)
    return set(raised.value.problems)


def signature_problems(task: Task[..., Any], args: Mapping[str, Any]) -> set[FieldError]:
    with pytest.raises(InvalidArguments) as raised:
        task.validate(args)
    return set(raised.value.problems)


MISTAKES: list[tuple[str, dict[str, Any], set[FieldError]]] = [
    (
        "missing",
        {"points": []},
        {FieldError(("label",), "field required")},
    ),
    (
        "wrong type",
        {"points": [], "label": "a", "scale": "big"},
        {FieldError(("scale",), "expected number, got string")},
    ),
    (
        "extra field",
        {"points": [], "label": "a", "colour": "red"},
        {FieldError(("colour",), "unexpected field 'colour'")},
    ),
    (
        "nested",
        {"points": [{"x": 1, "y": "up"}, {"x": 2}], "label": "a"},
        {
            FieldError(("points", 0, "y"), "expected number, got string"),
            FieldError(("points", 1, "y"), "field required"),
        },
    ),
    (
        "several at once",
        {"points": "none", "other": 1},
        {
            FieldError(("points",), "expected array, got string"),
            FieldError(("label",), "field required"),
            FieldError(("other",), "unexpected field 'other'"),
        },
    ),
]


@pytest.mark.parametrize(("mistake", "args", "expected"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_schema_and_signature_validation_report_the_same_problems(
    mistake: str, args: dict[str, Any], expected: set[FieldError]
) -> None:
    assert schema_problems(plot, args) == expected
    assert signature_problems(plot, args) == expected


def test_the_error_message_names_the_task_field_and_problem() -> None:
    with pytest.raises(InvalidArguments) as raised:
        validate_against_schema(plot.name, plot.args_schema, {"points": []})
    assert str(raised.value) == "invalid arguments for task 'geometry.plot': label: field required"
    assert raised.value.task == "geometry.plot"


def test_arguments_that_are_not_an_object_are_rejected_by_both_paths() -> None:
    expected = {FieldError((), "expected object, got array")}
    assert schema_problems(plot, [1, 2]) == expected  # type: ignore[arg-type]
    assert signature_problems(plot, [1, 2]) == expected  # type: ignore[arg-type]


def test_a_union_mismatch_is_one_problem_listing_the_accepted_types() -> None:
    union_registry = TaskRegistry()

    @union_registry.task(name="union")
    def pick(choice: int | str) -> None:
        """Takes either."""

    expected = {FieldError(("choice",), "expected integer or string, got array")}
    assert schema_problems(pick, {"choice": [1]}) == expected
    assert signature_problems(pick, {"choice": [1]}) == expected


def test_valid_arguments_pass_the_schema() -> None:
    args = {"points": [{"x": 1, "y": 2.5}], "label": "a", "when": "2024-05-01T10:00:00Z"}
    validate_against_schema(plot.name, plot.args_schema, args)


def test_the_schema_checks_date_times() -> None:
    problems = schema_problems(plot, {"points": [], "label": "a", "when": "yesterday"})
    assert [problem.location for problem in problems] == [("when",)]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("nan"), "NaN"),
        (float("inf"), "NaN and Infinity"),
        ("nul\x00byte", "NUL"),
        ("lone \ud800 surrogate", "surrogate"),
    ],
)
def test_values_no_backend_can_store_are_rejected_before_the_schema(
    value: Any, problem: str
) -> None:
    schema = {"type": "object", "properties": {"value": {}}}
    with pytest.raises(InvalidArguments, match=problem) as raised:
        validate_against_schema("any", schema, {"value": value})
    assert [item.location for item in raised.value.problems] == [("value",)]


def test_deeply_nested_arguments_are_rejected_without_exhausting_recursion() -> None:
    nested: Any = 1
    for _ in range(10_000):
        nested = [nested]
    with pytest.raises(InvalidArguments, match="nested deeper"):
        validate_against_schema("any", {"type": "object"}, {"value": nested})


def test_an_updated_schema_is_used_instead_of_a_cached_one() -> None:
    old = {"type": "object", "properties": {"n": {"type": "integer"}}}
    new = {"type": "object", "properties": {"n": {"type": "string"}}}
    validate_against_schema("versioned", old, {"n": 1})
    with pytest.raises(InvalidArguments, match="expected string, got integer"):
        validate_against_schema("versioned", new, {"n": 1})
