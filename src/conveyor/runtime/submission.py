"""Checks every submission path shares (Python API, CLI, HTTP API) before the store sees it.

Bad input is rejected here with the field and the problem named, identically on every
backend: NaN and Infinity, NUL characters and lone surrogates, oversized or too deeply
nested arguments are refused before they can fail later in a database or a JSON encoder.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from conveyor.core.errors import ArgumentsTooLarge, FieldError, InvalidSubmission
from conveyor.core.job import DEFAULT_TENANT, JSONValue, NewJob

MAX_NESTING = 64
MAX_NAME_LENGTH = 200
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_TAGS = 50
MAX_TAG_LENGTH = 100
# Keep priorities within a 32-bit column on every backend.
PRIORITY_RANGE = (-1_000_000, 1_000_000)
MAX_DELAY_SECONDS = 10 * 365 * 24 * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitOptions:
    """Per-job options a producer may set; None means "the task's default"."""

    queue: str | None = None
    priority: int | None = None
    delay: float | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    tags: Iterable[str] = ()
    idempotency_key: str | None = None
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskDefaults:
    queue: str
    priority: int
    max_attempts: int
    timeout: float | None


class JobBuilder:
    """NewJobs of one task with one set of options, which are checked once, not per job:
    in a bulk submission the same options were otherwise checked a thousand times."""

    def __init__(
        self, task: str, options: SubmitOptions, defaults: TaskDefaults, *, max_args_bytes: int
    ) -> None:
        self._task = task
        self._option_problems = _option_problems(options)
        self._max_args_bytes = max_args_bytes
        self._options = options
        self._defaults = defaults

    def build(self, args: Mapping[str, JSONValue]) -> NewJob:
        """A NewJob for `args`, which the task's validation has accepted (its argument model
        or its registered schema, both of which refuse what JSON storage cannot hold);
        InvalidSubmission naming every problem of the options."""
        if self._option_problems:
            raise InvalidSubmission(self._option_problems)
        size = len(orjson.dumps(args))
        if size > self._max_args_bytes:
            raise ArgumentsTooLarge(size, self._max_args_bytes)
        options, defaults = self._options, self._defaults
        new_job = NewJob(
            task=self._task,
            args=args,
            queue=options.queue or defaults.queue,
            priority=defaults.priority if options.priority is None else options.priority,
            max_attempts=options.max_attempts or defaults.max_attempts,
            timeout=defaults.timeout if options.timeout is None else options.timeout,
            delay=options.delay,
            run_at=options.run_at,
            idempotency_key=options.idempotency_key,
            tags=tuple(options.tags),
            tenant=options.tenant,
        )
        if new_job.idempotency_key is None:
            return new_job  # a job without a key is never compared with another: no digest
        return replace(new_job, fingerprint=fingerprint(new_job))


def fingerprint(job: NewJob) -> str:
    """A digest of what the producer asked for, to tell a true repeat from a reused key.

    The tenant and the key itself are left out: they are how the repeat is found.
    """
    asked = {
        "task": job.task,
        "args": job.args,
        "queue": job.queue,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "delay": job.delay,
        "run_at": job.run_at.astimezone(UTC).isoformat() if job.run_at else None,
        "tags": list(job.tags),
    }
    return hashlib.sha256(orjson.dumps(asked, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _option_problems(options: SubmitOptions) -> list[FieldError]:
    problems: list[FieldError] = []

    def check(ok: bool, field: str, message: str) -> None:
        if not ok:
            problems.append(FieldError((field,), message))

    if options.queue is not None:
        check(is_name(options.queue), "queue", _NAME_RULE)
    if options.priority is not None:
        low, high = PRIORITY_RANGE
        check(
            _is_int(options.priority) and low <= options.priority <= high,
            "priority",
            f"must be an integer between {low} and {high}",
        )
    if options.delay is not None:
        check(
            _is_number(options.delay) and 0 <= options.delay <= MAX_DELAY_SECONDS,
            "delay",
            f"must be a number of seconds between 0 and {MAX_DELAY_SECONDS:.0f}",
        )
        check(options.run_at is None, "run_at", "give either delay or run_at, not both")
    if options.run_at is not None:
        check(
            isinstance(options.run_at, datetime) and options.run_at.tzinfo is not None,
            "run_at",
            "must be a timezone-aware datetime (RFC 3339 with an offset)",
        )
    if options.max_attempts is not None:
        check(
            _is_int(options.max_attempts) and 1 <= options.max_attempts <= 1000,
            "max_attempts",
            "must be an integer between 1 and 1000",
        )
    if options.timeout is not None:
        check(
            _is_number(options.timeout) and options.timeout > 0,
            "timeout",
            "must be a positive number of seconds",
        )
    problems.extend(_tag_problems(options.tags))
    if options.idempotency_key is not None:
        key = options.idempotency_key
        check(
            isinstance(key, str)
            and 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH
            and not json_problems(key, ()),
            "idempotency_key",
            f"must be a non-empty string of at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
        )
    check(is_name(options.tenant), "tenant", _NAME_RULE)
    return problems


# The characters str.isspace() calls whitespace (the pattern engine shares its table).
_WHITESPACE = re.compile(r"\s")
_NAME_RULE = f"must be a non-empty string of at most {MAX_NAME_LENGTH} characters, no whitespace"


def checked_name(field: str, value: str) -> str:
    """`value` if it is a valid queue or tenant name; InvalidSubmission naming `field` if not."""
    if not is_name(value):
        raise InvalidSubmission([FieldError((field,), _NAME_RULE)])
    return value


def is_name(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_NAME_LENGTH
        and _WHITESPACE.search(value) is None
        and not json_problems(value, ())
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _tag_problems(tags: Iterable[str]) -> list[FieldError]:
    if isinstance(tags, str):
        return [FieldError(("tags",), "must be a list of strings, not a string")]
    listed = list(tags)
    if len(listed) > MAX_TAGS:
        return [FieldError(("tags",), f"at most {MAX_TAGS} tags")]
    return [
        FieldError(
            ("tags", index), f"must be a non-empty string of at most {MAX_TAG_LENGTH} characters"
        )
        for index, tag in enumerate(listed)
        if not isinstance(tag, str) or not 0 < len(tag) <= MAX_TAG_LENGTH or json_problems(tag, ())
    ]


def json_problems(value: Any, location: tuple[str | int, ...], depth: int = 0) -> list[FieldError]:
    """Everything in `value` that would not survive storage as JSON on every backend."""
    if depth > MAX_NESTING:
        return [FieldError(location, f"nested deeper than {MAX_NESTING} levels")]
    match value:
        case None | bool() | int():
            return []
        case float():
            return (
                []
                if math.isfinite(value)
                else [FieldError(location, "NaN and Infinity are not valid JSON")]
            )
        case str():
            return _string_problems(value, location)
        case Mapping():
            return _mapping_problems(value, location, depth)
        case list() | tuple():
            return [
                problem
                for index, item in enumerate(value)
                for problem in json_problems(item, (*location, index), depth + 1)
            ]
        case _:
            return [FieldError(location, f"{type(value).__name__} is not a JSON value")]


def _mapping_problems(
    value: Mapping[Any, Any], location: tuple[str | int, ...], depth: int
) -> list[FieldError]:
    problems: list[FieldError] = []
    for key, item in value.items():
        if not isinstance(key, str):
            problems.append(FieldError(location, f"object keys must be strings, got {key!r}"))
            continue
        problems.extend(_string_problems(key, (*location, key)))
        problems.extend(json_problems(item, (*location, key), depth + 1))
    return problems


def _string_problems(value: str, location: tuple[str | int, ...]) -> list[FieldError]:
    if "\x00" in value:
        return [FieldError(location, "NUL characters (\\u0000) are not allowed")]
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return [FieldError(location, "lone surrogate characters are not allowed")]
    return []
