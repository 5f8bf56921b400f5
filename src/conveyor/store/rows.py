"""Translation between stored rows and the domain's values."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row

from conveyor.core.errors import FieldError, InvalidSubmission
from conveyor.core.job import ErrorInfo, Job, JobState, Progress
from conveyor.store.schema import jobs
from conveyor.store.statements import RowValues

_STATES = {state.value: state for state in JobState}


def job_state(value: str) -> JobState:
    """The state stored as `value`. Calling JobState(value) cost several times a lookup,
    once for every job a claim or a bulk enqueue returns."""
    return _STATES[value]


JOB_COLUMNS = tuple(
    column
    for column in jobs.c
    if column.name not in {"lease_token", "lease_expires_at", "fingerprint"}
)
"""The columns of the jobs table that `job_from_values` reads: a statement that returns jobs
made from its rows (a claim: up to a worker's free slots at once) returns these alone."""


def job_from_row(row: Row[Any]) -> Job:
    return job_from_values(row._mapping)


def job_from_values(values: RowValues) -> Job:
    """A job from a row of the jobs table read by column name (documents already parsed)."""
    return Job(
        id=values["id"],
        task=values["task"],
        queue=values["queue"],
        state=job_state(values["state"]),
        priority=values["priority"],
        args=values["args"],
        attempt=values["attempt"],
        max_attempts=values["max_attempts"],
        timeout=values["timeout"],
        run_at=values["run_at"],
        created_at=values["created_at"],
        started_at=values["started_at"],
        finished_at=values["finished_at"],
        progress=progress_from_document(values["progress"]),
        result=values["result"],
        errors=_errors(values["errors"]),
        idempotency_key=values["idempotency_key"],
        tags=tuple(values["tags"] or ()),
        worker=values["worker_id"],
        tenant=values["tenant"],
        cancel_requested=bool(values["cancel_requested"]),
    )


def _errors(documents: list[Mapping[str, Any]] | None) -> tuple[ErrorInfo, ...]:
    if not documents:  # most jobs: nothing failed yet
        return ()
    return tuple(map(error_from_document, documents))


def progress_document(progress: Progress) -> dict[str, Any]:
    return {"percent": progress.percent, "message": progress.message}


def progress_from_document(document: Mapping[str, Any] | None) -> Progress | None:
    if document is None:
        return None
    return Progress(percent=float(document.get("percent", 0.0)), message=document.get("message"))


def error_document(error: ErrorInfo) -> dict[str, Any]:
    return {
        "type": error.type,
        "message": error.message,
        "traceback": error.traceback,
        "attempt": error.attempt,
    }


def error_from_document(document: Mapping[str, Any]) -> ErrorInfo:
    return ErrorInfo(
        type=str(document.get("type", "Error")),
        message=str(document.get("message", "")),
        traceback=document.get("traceback"),
        attempt=int(document.get("attempt", 0)),
    )


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The job id a cursor points after; InvalidSubmission for anything we did not issue."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        last_id = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        last_id = ""
    if not _is_job_id(last_id):
        raise InvalidSubmission([FieldError(("cursor",), "is not a cursor this server issued")])
    return last_id


def _is_job_id(text: str) -> bool:
    # Only the canonical form of a UUID: anything else (NUL bytes included, which
    # PostgreSQL refuses in text) never reaches a query.
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
