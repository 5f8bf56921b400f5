"""Retry policy: exponential backoff with full jitter, as pure functions.

Randomness is passed in (`jitter` in [0, 1)) so that decisions are reproducible in tests;
the delay is a number of seconds that the store adds to the database clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.core.errors import NonRetryableError, Retry
from conveyor.core.job import ErrorInfo
from conveyor.core.outcome import Failed, Retrying


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    base_seconds: float = 2.0
    max_seconds: float = 600.0
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.base_seconds < 0 or self.max_seconds < 0:
            raise ValueError("retry base and max seconds must be >= 0")
        if self.max_seconds < self.base_seconds:
            raise ValueError("retry max_seconds must be >= base_seconds")


def backoff_delay(policy: RetryPolicy, attempt: int, jitter: float) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(attempt - 1))]."""
    exponent = max(attempt - 1, 0)
    # Cap the exponent before raising: 2**10_000 would overflow a float.
    ceiling = min(policy.max_seconds, policy.base_seconds * 2.0 ** min(exponent, 60))
    return ceiling * min(max(jitter, 0.0), 1.0)


def is_retryable(policy: RetryPolicy, error: BaseException) -> bool:
    if isinstance(error, NonRetryableError):
        return False
    return not isinstance(error, policy.non_retryable)


def decide(
    *,
    policy: RetryPolicy,
    attempt: int,
    max_attempts: int,
    error: BaseException,
    info: ErrorInfo,
    jitter: float,
) -> Retrying | Failed:
    """Choose between another attempt and the dead-letter queue after `error`."""
    if attempt >= max_attempts or not is_retryable(policy, error):
        return Failed(info)
    if isinstance(error, Retry) and error.delay is not None:
        return Retrying(info, error.delay)
    return Retrying(info, backoff_delay(policy, attempt, jitter))
