"""Request bodies parsed strictly, before FastAPI validates them against a model.

Python's json module accepts NaN, Infinity and 1e400 and lets lone surrogates through;
each backend would then fail differently (or not at all). orjson refuses all of them, and
the shared submission checks then refuse NUL characters and deep nesting, so every bad
body gets the same 422 naming the field, on every backend, before anything is stored.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from conveyor.api.problems import problem
from conveyor.runtime.submission import json_problems

# Levels of a body that wrap job arguments (batch object, "jobs" list, one job): the
# nesting limit applies to the arguments themselves, as on every other submission path.
ENVELOPE_DEPTH = 3

_UNPARSED = object()


class StrictJSONRequest(Request):
    """A request whose `json()` is the strictly parsed and checked body."""

    _strict_json: Any = _UNPARSED

    async def json(self) -> Any:
        if self._strict_json is _UNPARSED:
            self._strict_json = parse_strictly(await self.body())
        return self._strict_json


class StrictJSONRoute(APIRoute):
    """An APIRoute that checks the content type and parses JSON bodies strictly."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def strict_handler(request: Request) -> Response:
            strict = StrictJSONRequest(request.scope, request.receive)
            if await strict.body():
                require_json_content_type(strict)
                await strict.json()
            return await handler(strict)

        return strict_handler


def require_json_content_type(request: Request) -> None:
    declared = request.headers.get("content-type")
    if not is_json_media_type(declared):
        raise problem(
            415,
            "unsupported-media-type",
            f"the body must be JSON (Content-Type: application/json), not {declared or 'untyped'}",
        )


def is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def parse_strictly(body: bytes) -> Any:
    """The JSON value of `body`; RequestValidationError naming what is wrong otherwise."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body",),
                    "msg": "invalid JSON",
                    "ctx": {"error": str(error)},
                }
            ]
        ) from None
    problems = json_problems(value, (), -ENVELOPE_DEPTH)
    if problems:
        raise RequestValidationError(
            [
                {"type": "json_unsafe", "loc": ("body", *item.location), "msg": item.message}
                for item in problems
            ]
        )
    return value
