"""A task's signature as a pydantic model: its argument schema, validation and binding.

Jobs are called by keyword with JSON arguments, so only parameters that can be passed by
keyword are allowed. Each parameter becomes a model field named `field_<n>` with the
parameter's name as its alias: a parameter may then be called anything (`json`, `schema`,
`model_config`) without shadowing pydantic's own attributes.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PydanticUserError, ValidationError, create_model
from pydantic_core import PydanticSerializationError, to_jsonable_python

from conveyor.core.errors import FieldError, InvalidArguments
from conveyor.runtime.context import JobContext
from conveyor.runtime.submission import json_problems
from conveyor.runtime.validation import field_errors_from_pydantic, wrong_type

_MODEL_CONFIG = ConfigDict(
    extra="forbid",
    allow_inf_nan=False,
    # Keep NaN as NaN when dumping an `Any` field, so json_problems rejects it
    # instead of pydantic quietly turning it into null.
    ser_json_inf_nan="constants",
    arbitrary_types_allowed=False,
)

_REJECTED_KINDS: dict[object, str] = {
    inspect.Parameter.POSITIONAL_ONLY: "is positional-only",
    inspect.Parameter.VAR_POSITIONAL: "collects *args",
    inspect.Parameter.VAR_KEYWORD: "collects **kwargs",
}


@dataclass(frozen=True, slots=True)
class ArgumentModel:
    """Validates a task's arguments and turns them into keyword arguments for its call."""

    task: str
    model: type[BaseModel]
    parameters: Mapping[str, str]  # field name → parameter name
    context_parameter: str | None

    @classmethod
    def from_function(cls, task: str, function: Callable[..., Any]) -> ArgumentModel:
        hints = _resolved_annotations(task, function)
        fields: dict[str, Any] = {}
        parameters: dict[str, str] = {}
        context_parameter: str | None = None
        for index, parameter in enumerate(inspect.signature(function).parameters.values()):
            _check_kind(task, parameter)
            annotation = hints.get(parameter.name, Any)
            if _is_context(annotation):
                context_parameter = _only_context(task, context_parameter, parameter.name)
                continue
            fields[f"field_{index}"] = (annotation, _field(parameter))
            parameters[f"field_{index}"] = parameter.name
        model = _build_model(task, fields, module=getattr(function, "__module__", None))
        return cls(task, model, parameters, context_parameter)

    def json_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema(by_alias=True)

    def validate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments as they are stored: validated, JSON-ready, defaults not frozen in."""
        instance = self._validated(args)
        try:
            stored = instance.model_dump(mode="json", by_alias=True, exclude_unset=True)
        except PydanticSerializationError as error:
            raise InvalidArguments(self.task, [self._unserializable(instance, error)]) from None
        problems = json_problems(stored, ())
        if problems:
            raise InvalidArguments(self.task, problems)
        return stored

    def bind(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments for the call; omitted parameters keep the function's defaults."""
        instance = self._validated(args)
        return {
            self.parameters[field]: getattr(instance, field) for field in instance.model_fields_set
        }

    def _validated(self, args: Mapping[str, Any]) -> BaseModel:
        if not isinstance(args, Mapping):
            raise InvalidArguments(self.task, [FieldError((), wrong_type(["object"], args))])
        try:
            # A dict is validated as it is (pydantic does not change it); any other mapping as one.
            return self.model.model_validate(args if type(args) is dict else dict(args))
        except ValidationError as error:
            raise InvalidArguments(self.task, field_errors_from_pydantic(error)) from None

    def _unserializable(self, instance: BaseModel, error: Exception) -> FieldError:
        for field in sorted(instance.model_fields_set):
            value = getattr(instance, field)
            try:
                to_jsonable_python(value)
            except PydanticSerializationError:
                message = f"a value of type {type(value).__name__} cannot be stored as JSON"
                return FieldError((self.parameters[field],), message)
        return FieldError((), f"arguments cannot be stored as JSON: {error}")


def _resolved_annotations(task: str, function: Callable[..., Any]) -> dict[str, Any]:
    """Annotations as objects, also those written as strings (postponed evaluation)."""
    try:
        return typing.get_type_hints(function, include_extras=True)
    except NameError as error:
        raise TypeError(
            f"task {task!r}: cannot resolve the annotation {error.name!r}; define it at module "
            "level, where the task's annotations can see it"
        ) from None
    except TypeError:
        # Not a plain function (a functools.partial, a callable object): read the signature.
        signature = inspect.signature(function, eval_str=True)
        return {
            name: parameter.annotation
            for name, parameter in signature.parameters.items()
            if parameter.annotation is not inspect.Parameter.empty
        }


def _check_kind(task: str, parameter: inspect.Parameter) -> None:
    problem = _REJECTED_KINDS.get(parameter.kind)
    if problem is not None:
        raise TypeError(
            f"task {task!r}: parameter {parameter.name!r} {problem}; jobs are called with "
            "named arguments only, so every parameter must be passable by keyword"
        )


def _is_context(annotation: Any) -> bool:
    """`JobContext`, or `JobContext | None` (so the function can also be called directly)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        return len(members) == 1 and _is_context(members[0])
    return isinstance(annotation, type) and issubclass(annotation, JobContext)


def _only_context(task: str, existing: str | None, name: str) -> str:
    if existing is not None:
        raise TypeError(
            f"task {task!r}: parameters {existing!r} and {name!r} are both annotated "
            "JobContext; a task takes at most one"
        )
    return name


def _field(parameter: inspect.Parameter) -> Any:
    if parameter.default is inspect.Parameter.empty:
        return Field(alias=parameter.name)
    return Field(default=parameter.default, alias=parameter.name)


def _build_model(task: str, fields: dict[str, Any], *, module: str | None) -> type[BaseModel]:
    # In the function's module, so pydantic resolves any forward reference left where the
    # function's own annotations do.
    try:
        model: type[BaseModel] = create_model(
            task, __config__=_MODEL_CONFIG, __module__=module or __name__, **fields
        )
        model.model_json_schema(by_alias=True)  # fail now, not when the worker registers
    except PydanticUserError as error:
        raise TypeError(
            f"task {task!r}: {_unsupported_parameter(fields)} cannot be validated from JSON "
            f"(jobs carry JSON arguments): {error.message.splitlines()[0]}"
        ) from None
    return model


def _unsupported_parameter(fields: Mapping[str, Any]) -> str:
    """Name the parameter pydantic could not handle, to point the user at it."""
    for field, (annotation, info) in fields.items():
        single: dict[str, Any] = {field: (annotation, info)}
        try:
            create_model("probe", __config__=_MODEL_CONFIG, **single)
        except PydanticUserError:
            return f"parameter {info.alias!r} of type {annotation!r}"
    return "its parameters"
