"""What a client may send: job submissions and key requests, unknown fields refused.

Types are strict (no "5" for 5, no true for 1); the value checks every submission path
shares (names, ranges, tags, arguments) run afterwards in `Conveyor.prepare`, so the
HTTP API accepts exactly what the Python API accepts.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
)

from conveyor.core.access import Role
from conveyor.core.job import DEFAULT_TENANT
from conveyor.runtime.submission import SubmitOptions

MAX_BATCH_JOBS = 1000


# The date that starts an RFC 3339 date-time. Pydantic would also read a number, or a
# numeric string ("1700000000", "0.5"), as a Unix timestamp: neither is RFC 3339.
_RFC3339_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]")


def _rfc3339_text(value: object) -> object:
    if not isinstance(value, str) or not _RFC3339_DATE.match(value):
        raise ValueError("must be an RFC 3339 date-time string with an offset")
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_in_utc)]
"""An RFC 3339 date-time with an offset, normalised to UTC."""


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters (\\u0000) are not allowed")
    return value


Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]
"""A task, queue or tag name given in a query string."""

StrictInt = Annotated[int, Strict()]
StrictNumber = Annotated[float, Strict()]


class JobSubmission(BaseModel):
    """One job. Options left out take the task's defaults."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=200, examples=["math.square_sum"])
    args: dict[str, Any] = Field(default_factory=dict, examples=[{"numbers": [1, 2, 3]}])
    queue: str | None = None
    priority: StrictInt | None = Field(default=None, description="higher runs first")
    delay: StrictNumber | None = Field(default=None, description="seconds from now")
    run_at: Instant | None = Field(default=None, description="exclusive with delay")
    max_attempts: StrictInt | None = None
    timeout: StrictNumber | None = Field(default=None, description="seconds per attempt")
    tags: list[str] = Field(default_factory=list)
    idempotency_key: str | None = Field(
        default=None, description="or the Idempotency-Key header; a repeat returns the same job"
    )

    def options(self, *, tenant: str, idempotency_key: str | None = None) -> SubmitOptions:
        return SubmitOptions(
            queue=self.queue,
            priority=self.priority,
            delay=self.delay,
            run_at=self.run_at,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            tags=tuple(self.tags),
            idempotency_key=idempotency_key or self.idempotency_key,
            tenant=tenant,
        )


class BatchSubmission(BaseModel):
    """Up to 1000 jobs, stored atomically: all of them, or none."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[JobSubmission] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    tenant: str = Field(default=DEFAULT_TENANT, min_length=1, max_length=200)
    role: Role = Role.WRITE
