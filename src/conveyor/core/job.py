"""Jobs, their states, and the one table of legal transitions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

JSONValue = Any
"""A value that survives a JSON round trip (checked where it enters the system)."""


class JobState(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYABLE = "retryable"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
WAITING_STATES = frozenset({JobState.SCHEDULED, JobState.QUEUED, JobState.RETRYABLE})


class Transition(StrEnum):
    """Every way a job changes state. Each is applied as one conditional UPDATE."""

    PROMOTE = "promote"  # a due scheduled/retryable job becomes ready
    CLAIM = "claim"  # a worker takes a ready job under a lease
    COMPLETE = "complete"
    RETRY_LATER = "retry_later"  # an attempt failed and attempts remain
    FAIL = "fail"  # out of attempts, or not retryable: the dead-letter queue
    CANCEL_RUNNING = "cancel_running"  # a running job stopped after a cancel request
    RELEASE = "release"  # a stopping worker hands an unfinished job back
    RESCUE = "rescue"  # the lease expired: the holder is presumed dead
    RESCUE_LAST = "rescue_last"  # the lease of the last attempt expired
    CANCEL = "cancel"  # a user cancels a job that is not running
    MANUAL_RETRY = "manual_retry"  # a user puts a dead or cancelled job back


@dataclass(frozen=True, slots=True)
class TransitionRule:
    sources: frozenset[JobState]
    target: JobState


def _rule(sources: set[JobState], target: JobState) -> TransitionRule:
    return TransitionRule(frozenset(sources), target)


TRANSITIONS: Mapping[Transition, TransitionRule] = {
    Transition.PROMOTE: _rule({JobState.SCHEDULED, JobState.RETRYABLE}, JobState.QUEUED),
    Transition.CLAIM: _rule({JobState.QUEUED}, JobState.RUNNING),
    Transition.COMPLETE: _rule({JobState.RUNNING}, JobState.COMPLETED),
    Transition.RETRY_LATER: _rule({JobState.RUNNING}, JobState.RETRYABLE),
    Transition.FAIL: _rule({JobState.RUNNING}, JobState.FAILED),
    Transition.CANCEL_RUNNING: _rule({JobState.RUNNING}, JobState.CANCELLED),
    Transition.RELEASE: _rule({JobState.RUNNING}, JobState.QUEUED),
    Transition.RESCUE: _rule({JobState.RUNNING}, JobState.QUEUED),
    Transition.RESCUE_LAST: _rule({JobState.RUNNING}, JobState.FAILED),
    Transition.CANCEL: _rule(set(WAITING_STATES), JobState.CANCELLED),
    Transition.MANUAL_RETRY: _rule({JobState.FAILED, JobState.CANCELLED}, JobState.QUEUED),
}


def rule(transition: Transition) -> TransitionRule:
    return TRANSITIONS[transition]


def can_apply(transition: Transition, state: JobState) -> bool:
    return state in TRANSITIONS[transition].sources


@dataclass(frozen=True, slots=True)
class Progress:
    percent: float
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """One failed attempt, as stored in the job's error history."""

    type: str
    message: str
    traceback: str | None = None
    attempt: int = 0


DEFAULT_QUEUE = "default"
DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    """A job as a producer submits it, before the store has accepted it."""

    task: str
    args: Mapping[str, JSONValue] = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    max_attempts: int = 5
    timeout: float | None = None
    delay: float | None = None  # seconds from now, by the database clock
    run_at: datetime | None = None  # an absolute instant; exclusive with delay
    idempotency_key: str | None = None
    tags: tuple[str, ...] = ()
    tenant: str = DEFAULT_TENANT
    # A digest of everything the producer asked for; a reused idempotency key must bring
    # the same one, or the store refuses it (IdempotencyConflict).
    fingerprint: str | None = None

    @property
    def is_deferred(self) -> bool:
        return (self.delay is not None and self.delay > 0) or self.run_at is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A job as the store holds it. A plain value: it never talks to storage."""

    id: str
    task: str
    queue: str
    state: JobState
    priority: int
    args: Mapping[str, JSONValue]
    attempt: int
    max_attempts: int
    timeout: float | None
    run_at: datetime
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Progress | None = None
    result: JSONValue = None
    errors: tuple[ErrorInfo, ...] = ()
    idempotency_key: str | None = None
    tags: tuple[str, ...] = ()
    worker: str | None = None
    tenant: str = DEFAULT_TENANT
    cancel_requested: bool = False

    @property
    def error(self) -> ErrorInfo | None:
        """The most recent failed attempt, if any."""
        return self.errors[-1] if self.errors else None

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal
