"""Argument validation that reads the same whichever path checked the arguments.

Two paths validate a job's arguments:

* a process that imported the task's code validates with pydantic, from the signature
  (`Task.validate`, through `field_errors_from_pydantic` below);
* a process that did not (the API, the CLI) validates against the JSON schema a worker
  registered (`validate_against_schema`).

Both report `FieldError`s with the same locations and the same wording for the mistakes
users make most: a missing field ("field required"), a value of the wrong JSON type
("expected number, got string") and a field the task does not take ("unexpected field 'x'").

The pydantic path is lax in the way FastAPI is (it accepts "3" for an int and stores 3);
the schema path requires the JSON type. The schema path is therefore the stricter one: a
job the API accepted by schema binds in the worker, barring constraints JSON Schema cannot
express.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError as SchemaViolation
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from conveyor.core.errors import FieldError, InvalidArguments
from conveyor.runtime.submission import json_problems

Location = tuple[str | int, ...]

# pydantic error types, grouped by the JSON type the field expected.
_EXPECTED_BY_ERROR_TYPE = {
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "float_parsing": "number",
    "string_type": "string",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "list_type": "array",
    "tuple_type": "array",
    "set_type": "array",
    "frozen_set_type": "array",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
    "dataclass_type": "object",
    "typed_dict_type": "object",
    "none_required": "null",
}


def json_type_name(value: Any) -> str:
    """The JSON type a Python value stands for, as JSON Schema names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def wrong_type(expected: Iterable[str], value: Any) -> str:
    return f"expected {' or '.join(expected)}, got {json_type_name(value)}"


def unexpected_field(name: str | int) -> str:
    return f"unexpected field '{name}'"


FIELD_REQUIRED = "field required"


# pydantic -----------------------------------------------------------------------------


def field_errors_from_pydantic(error: ValidationError) -> list[FieldError]:
    """Translate a pydantic ValidationError into FieldErrors worded like the schema path."""
    details = error.errors(include_url=False)
    return [
        _describe_union(group) if len(group) > 1 else _describe(group[0])
        for group in _group_union_members(details)
    ]


def _describe(detail: ErrorDetails) -> FieldError:
    location = tuple(detail["loc"])
    kind = detail["type"]
    if kind == "missing":
        return FieldError(location, FIELD_REQUIRED)
    if kind == "extra_forbidden":
        return FieldError(location, unexpected_field(location[-1] if location else ""))
    if kind in _EXPECTED_BY_ERROR_TYPE:
        return FieldError(location, wrong_type([_EXPECTED_BY_ERROR_TYPE[kind]], detail["input"]))
    if kind == "finite_number":
        return FieldError(location, "NaN and Infinity are not valid JSON")
    return FieldError(location, detail["msg"])


def _group_union_members(details: Sequence[ErrorDetails]) -> list[list[ErrorDetails]]:
    """Gather the errors pydantic reports once per member of a union (`int | str`).

    pydantic appends the member's name to the location ("u.int", "u.str"); the schema
    path reports one problem at "u". Members failing on the same input are one problem.
    """
    groups: list[list[ErrorDetails]] = []
    for detail in details:
        previous = groups[-1][0] if groups else None
        if previous is not None and _same_union(previous, detail):
            groups[-1].append(detail)
        else:
            groups.append([detail])
    return groups


def _same_union(first: ErrorDetails, second: ErrorDetails) -> bool:
    first_location, second_location = first["loc"], second["loc"]
    return (
        len(first_location) == len(second_location) >= 1
        and first_location[:-1] == second_location[:-1]
        and isinstance(second_location[-1], str)
        and first_location[-1] != second_location[-1]
        and first["input"] is second["input"]
    )


def _describe_union(group: Sequence[ErrorDetails]) -> FieldError:
    location = tuple(group[0]["loc"][:-1])
    expected = [_EXPECTED_BY_ERROR_TYPE.get(detail["type"]) for detail in group]
    if all(expected):
        names = list(dict.fromkeys(name for name in expected if name))
        return FieldError(location, wrong_type(names, group[0]["input"]))
    return FieldError(location, " or ".join(detail["msg"] for detail in group))


# JSON schema --------------------------------------------------------------------------


def validate_against_schema(task: str, schema: Mapping[str, Any], args: Mapping[str, Any]) -> None:
    """Check `args` against a task's registered JSON schema; raise InvalidArguments."""
    # First, so that NaN is refused and deep nesting never reaches jsonschema's recursion.
    unsafe = json_problems(args, ())
    if unsafe:
        raise InvalidArguments(task, unsafe)
    validator = _compiled(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    violations = sorted(validator.iter_errors(args), key=_violation_order)
    problems = list(dict.fromkeys(_describe_violations(violations)))
    if problems:
        raise InvalidArguments(task, problems)


def _violation_order(violation: SchemaViolation) -> tuple[str, ...]:
    return tuple(str(part) for part in violation.absolute_path)


@lru_cache(maxsize=512)
def _compiled(schema_json: bytes) -> Draft202012Validator:
    # Keyed by the schema's canonical JSON: equal schemas share one compiled validator,
    # and a task whose schema changed on redeploy gets a fresh one.
    return Draft202012Validator(orjson.loads(schema_json), format_checker=_FORMATS)


def _check_date_time(value: object) -> bool:
    # jsonschema checks "date-time" only with an optional extra package; accept what
    # pydantic accepts for a datetime given as a string.
    if isinstance(value, str):
        datetime.fromisoformat(value)
    return True


_FORMATS = FormatChecker()
_FORMATS.checks("date-time", raises=ValueError)(_check_date_time)


def _describe_violations(violations: Iterable[SchemaViolation]) -> Iterable[FieldError]:
    for violation in violations:
        location: Location = tuple(violation.absolute_path)
        yield from _describe_violation(violation, location)


def _describe_violation(violation: SchemaViolation, location: Location) -> Iterable[FieldError]:
    keyword, instance = violation.validator, violation.instance
    rule: Any = violation.validator_value
    if keyword == "required" and isinstance(instance, Mapping):
        missing = [name for name in rule if name not in instance]
        return [FieldError((*location, name), FIELD_REQUIRED) for name in missing]
    if keyword == "additionalProperties" and isinstance(instance, Mapping):
        extra = _extra_properties(violation.schema, instance)
        return [FieldError((*location, name), unexpected_field(name)) for name in extra]
    if keyword == "type":
        expected = [rule] if isinstance(rule, str) else list(rule)
        return [FieldError(location, wrong_type(expected, instance))]
    if keyword in ("anyOf", "oneOf"):
        members = _member_types(rule)
        if members:
            return [FieldError(location, wrong_type(members, instance))]
    return [FieldError(location, violation.message)]


def _extra_properties(schema: Any, instance: Mapping[str, Any]) -> list[str]:
    known = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
    return [name for name in instance if name not in known]


def _member_types(members: Any) -> list[str] | None:
    """The JSON types of a union whose members are plain types; None if any is richer."""
    types: list[str] = []
    for member in members:
        if not isinstance(member, Mapping) or not isinstance(member.get("type"), str):
            return None
        types.append(member["type"])
    return list(dict.fromkeys(types))
