"""The pure retry policy: bounded exponential backoff with full jitter, and decide()."""

from __future__ import annotations

import pytest

from conveyor.core.errors import JobTimeout, NonRetryableError, Retry
from conveyor.core.job import ErrorInfo
from conveyor.core.outcome import Failed, Retrying
from conveyor.core.retry import RetryPolicy, backoff_delay, decide, is_retryable

INFO = ErrorInfo(type="ValueError", message="boom", attempt=1)


class Permanent(Exception):
    pass


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 0.999])
def test_backoff_stays_within_full_jitter_bounds(attempt: int, jitter: float) -> None:
    policy = RetryPolicy(base_seconds=2.0, max_seconds=600.0)
    delay = backoff_delay(policy, attempt, jitter)
    assert 0.0 <= delay <= 2.0 * 2 ** (attempt - 1)
    assert delay == pytest.approx(jitter * 2.0 * 2 ** (attempt - 1))


def test_backoff_grows_exponentially_with_the_attempt() -> None:
    policy = RetryPolicy(base_seconds=1.0, max_seconds=10_000.0)
    ceilings = [backoff_delay(policy, attempt, 1.0) for attempt in range(1, 6)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_backoff_never_exceeds_the_cap_even_for_huge_attempts() -> None:
    policy = RetryPolicy(base_seconds=2.0, max_seconds=30.0)
    assert backoff_delay(policy, 10, 1.0) == 30.0
    assert backoff_delay(policy, 10_000, 1.0) == 30.0


def test_out_of_range_jitter_is_clamped() -> None:
    policy = RetryPolicy(base_seconds=2.0, max_seconds=30.0)
    assert backoff_delay(policy, 1, -5.0) == 0.0
    assert backoff_delay(policy, 1, 5.0) == 2.0


def test_policy_rejects_negative_or_inverted_bounds() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        RetryPolicy(base_seconds=-1.0)
    with pytest.raises(ValueError, match="max_seconds"):
        RetryPolicy(base_seconds=10.0, max_seconds=1.0)


def test_a_failed_attempt_with_attempts_left_is_retried_after_backoff() -> None:
    outcome = decide(
        policy=RetryPolicy(base_seconds=2.0),
        attempt=2,
        max_attempts=5,
        error=ValueError("boom"),
        info=INFO,
        jitter=0.5,
    )
    assert outcome == Retrying(INFO, 2.0)


def test_the_last_attempt_goes_to_the_dead_letter_queue() -> None:
    outcome = decide(
        policy=RetryPolicy(), attempt=3, max_attempts=3, error=ValueError(), info=INFO, jitter=0.5
    )
    assert outcome == Failed(INFO)


def test_retry_with_a_delay_overrides_the_backoff() -> None:
    outcome = decide(
        policy=RetryPolicy(), attempt=1, max_attempts=3, error=Retry(delay=7), info=INFO, jitter=0.9
    )
    assert outcome == Retrying(INFO, 7)


def test_retry_without_a_delay_uses_the_backoff() -> None:
    outcome = decide(
        policy=RetryPolicy(base_seconds=4.0),
        attempt=1,
        max_attempts=3,
        error=Retry(),
        info=INFO,
        jitter=0.5,
    )
    assert outcome == Retrying(INFO, 2.0)


def test_retry_on_the_last_attempt_still_fails() -> None:
    outcome = decide(
        policy=RetryPolicy(), attempt=3, max_attempts=3, error=Retry(delay=1), info=INFO, jitter=0
    )
    assert outcome == Failed(INFO)


def test_retry_rejects_a_negative_delay() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        Retry(delay=-1)


def test_non_retryable_errors_fail_at_once() -> None:
    outcome = decide(
        policy=RetryPolicy(),
        attempt=1,
        max_attempts=5,
        error=NonRetryableError("bad input"),
        info=INFO,
        jitter=0.5,
    )
    assert outcome == Failed(INFO)


def test_a_policys_non_retryable_types_fail_at_once_subclasses_included() -> None:
    policy = RetryPolicy(non_retryable=(Permanent,))

    class MorePermanent(Permanent):
        pass

    assert not is_retryable(policy, MorePermanent())
    assert is_retryable(policy, ValueError())
    outcome = decide(
        policy=policy, attempt=1, max_attempts=5, error=MorePermanent(), info=INFO, jitter=0.5
    )
    assert outcome == Failed(INFO)


def test_a_timeout_follows_the_retry_policy() -> None:
    outcome = decide(
        policy=RetryPolicy(base_seconds=2.0),
        attempt=1,
        max_attempts=2,
        error=JobTimeout("too slow"),
        info=INFO,
        jitter=1.0,
    )
    assert outcome == Retrying(INFO, 2.0)
