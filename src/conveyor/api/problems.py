"""Errors as RFC 9457 problem details (`application/problem+json`), for every failure.

Each Conveyor error maps to one status and one problem type; validation problems list each
field with where it was (body, query, path, header) and what is wrong with it. Anything
unexpected becomes a 500 whose body says nothing about the internals; the traceback goes
to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import compile_path

from conveyor.core.errors import (
    ApiKeyNotFound,
    ArgumentsTooLarge,
    ConfigError,
    FieldError,
    IdempotencyConflict,
    InvalidArguments,
    InvalidSubmission,
    InvalidTransition,
    JobNotFound,
    StoreUnavailable,
    UnknownTask,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:conveyor:problem:"
# How many field problems a `detail` names; the `errors` member lists them all.
DETAIL_LISTED = 5
# Seconds a client should wait before retrying while the store is unreachable.
RETRY_AFTER_SECONDS = 5

logger = logging.getLogger("conveyor.api")

Location = tuple[str | int, ...]

# One title per problem type (RFC 9457: the title does not change between occurrences).
TITLES = {
    "unknown-task": "Unknown task",
    "invalid-arguments": "Invalid arguments",
    "arguments-too-large": "Arguments too large",
    "invalid-submission": "Invalid submission",
    "invalid-batch": "Invalid batch",
    "invalid-request": "Invalid request",
    "idempotency-conflict": "Idempotency key reused",
    "job-not-found": "Job not found",
    "api-key-not-found": "API key not found",
    "invalid-transition": "Not possible in the job's state",
    "store-unavailable": "Store unavailable",
    "unsupported-media-type": "Unsupported media type",
    "unauthenticated": "Unauthenticated",
    "forbidden": "Forbidden",
}


class FieldProblem(BaseModel):
    field: str  # dotted path, e.g. "args.numbers" or "jobs.3.task"
    location: str  # body, query, path or header
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, with `errors` for field-level validation."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldProblem] | None = None


@dataclass(frozen=True, slots=True)
class ProblemDescription:
    """A problem before it knows the request it answers."""

    status: int
    slug: str | None  # None: a plain HTTP status ("about:blank")
    detail: str
    errors: tuple[FieldProblem, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)


class ProblemException(Exception):
    """Raised by the API's own code to answer with a specific problem."""

    def __init__(self, description: ProblemDescription) -> None:
        super().__init__(description.detail)
        self.description = description


def problem(
    status: int,
    slug: str | None,
    detail: str,
    *,
    errors: Sequence[FieldProblem] = (),
    headers: Mapping[str, str] | None = None,
) -> ProblemException:
    return ProblemException(
        ProblemDescription(status, slug, detail, errors=tuple(errors), headers=headers or {})
    )


def field_name(location: Location) -> str:
    return ".".join(str(part) for part in location)


def field_problems(
    problems: Sequence[FieldError], prefix: Location = (), where: str = "body"
) -> list[FieldProblem]:
    return [
        FieldProblem(
            field=field_name((*prefix, *item.location)), location=where, message=item.message
        )
        for item in problems
    ]


# Conveyor errors ------------------------------------------------------------------------


def describe_error(error: Exception, prefix: Location = ()) -> ProblemDescription | None:
    """The problem for a Conveyor error; `prefix` places a batch item's fields (jobs.3)."""
    match error:
        case UnknownTask():
            detail = f"task {error.task!r} is not registered by any worker"
            task_field = FieldProblem(
                field=field_name((*prefix, "task")), location="body", message=detail
            )
            return ProblemDescription(422, "unknown-task", detail, errors=(task_field,))
        case InvalidArguments():
            errors = field_problems(error.problems, (*prefix, "args"))
            detail = f"the arguments do not match task {error.task!r}: " + listing(errors)
            return ProblemDescription(422, "invalid-arguments", detail, errors=tuple(errors))
        case ArgumentsTooLarge():
            errors = field_problems(error.problems, prefix)
            detail = f"job arguments are {error.size} bytes; the limit is {error.limit}"
            return ProblemDescription(413, "arguments-too-large", detail, errors=tuple(errors))
        case InvalidSubmission():
            errors = field_problems(error.problems, prefix)
            detail = "invalid submission: " + listing(errors)
            return ProblemDescription(422, "invalid-submission", detail, errors=tuple(errors))
        case IdempotencyConflict():
            return ProblemDescription(422, "idempotency-conflict", str(error))
        case JobNotFound():
            return ProblemDescription(404, "job-not-found", str(error))
        case ApiKeyNotFound():
            return ProblemDescription(404, "api-key-not-found", str(error))
        case InvalidTransition():
            return ProblemDescription(409, "invalid-transition", str(error))
        case StoreUnavailable() | ConfigError():
            # The cause names hosts and files: it goes to the log, not to the client.
            logger.warning("answering 503: %s", error)
            return ProblemDescription(
                503,
                "store-unavailable",
                "the job store is unavailable; try again shortly",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
    return None


def listing(errors: Sequence[FieldProblem]) -> str:
    """The first few field problems, for a `detail`; `errors` lists every one."""
    named = "; ".join(f"{item.field}: {item.message}" for item in errors[:DETAIL_LISTED])
    more = len(errors) - DETAIL_LISTED
    return named + (f" (and {more} more)" if more > 0 else "")


# Responses ------------------------------------------------------------------------------


def problem_response(request: Request, description: ProblemDescription) -> Response:
    status = HTTPStatus(description.status)
    body = Problem(
        type=PROBLEM_TYPE_PREFIX + description.slug if description.slug else "about:blank",
        title=TITLES.get(description.slug or "", status.phrase),
        status=description.status,
        detail=description.detail,
        instance=request.url.path,
        errors=list(description.errors) or None,
    )
    return Response(
        body.model_dump_json(exclude_none=True),
        status_code=description.status,
        headers=dict(description.headers),
        media_type=PROBLEM_MEDIA_TYPE,
    )


async def _on_problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, ProblemException)
    return problem_response(request, error.description)


async def _on_conveyor_error(request: Request, error: Exception) -> Response:
    description = describe_error(error)
    if description is None:
        return await _on_unexpected(request, error)
    return problem_response(request, description)


async def _on_http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    status = HTTPStatus(error.status_code)
    detail = error.detail if error.detail != status.phrase else _default_detail(request, status)
    headers = dict(error.headers or {})
    if status is HTTPStatus.METHOD_NOT_ALLOWED:
        allowed = allowed_methods(request, headers.get("Allow"))
        if allowed:
            headers["Allow"] = allowed
    return problem_response(
        request, ProblemDescription(error.status_code, None, detail, headers=headers)
    )


def allowed_methods(request: Request, given: str | None) -> str | None:
    """Every method some operation takes at this path, from the OpenAPI schema.

    Starlette names only the methods of the first route whose path matched.
    """
    path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        if compile_path(template)[0].match(path):
            methods.update(method.upper() for method in operations)
    return ", ".join(sorted(methods)) if methods else given


def _default_detail(request: Request, status: HTTPStatus) -> str:
    if status is HTTPStatus.NOT_FOUND:
        return f"there is nothing at {request.url.path}"
    if status is HTTPStatus.METHOD_NOT_ALLOWED:
        return f"{request.method} is not allowed on {request.url.path}"
    return status.description or status.phrase


async def _on_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    errors = [_from_pydantic(item) for item in error.errors()]
    description = ProblemDescription(
        422, "invalid-request", "the request is invalid: " + listing(errors), errors=tuple(errors)
    )
    return problem_response(request, description)


def _from_pydantic(item: Mapping[str, Any]) -> FieldProblem:
    where, *path = item.get("loc") or ("body",)
    message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
    context = item.get("ctx") or {}
    if item.get("type") == "json_invalid" and "error" in context:
        message = f"invalid JSON: {context['error']}"
        path = []  # the position is in the message; it is not a field
    return FieldProblem(
        field=field_name(tuple(path)) or "(body)", location=str(where), message=message
    )


async def _on_unexpected(request: Request, error: Exception) -> Response:
    logger.error(
        "unexpected error answering %s %s", request.method, request.url.path, exc_info=error
    )
    description = ProblemDescription(500, None, "an unexpected error occurred; it was logged")
    return problem_response(request, description)


CONVEYOR_ERRORS: tuple[type[Exception], ...] = (
    UnknownTask,
    InvalidArguments,
    ArgumentsTooLarge,
    InvalidSubmission,
    IdempotencyConflict,
    JobNotFound,
    ApiKeyNotFound,
    InvalidTransition,
    StoreUnavailable,
    ConfigError,
)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemException, _on_problem)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    for error_type in CONVEYOR_ERRORS:
        app.add_exception_handler(error_type, _on_conveyor_error)
    app.add_exception_handler(Exception, _on_unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for an operation's problem statuses."""
    schema = {"schema": {"$ref": "#/components/schemas/Problem"}}
    return {
        status: {"description": HTTPStatus(status).phrase, "content": {PROBLEM_MEDIA_TYPE: schema}}
        for status in statuses
    }
