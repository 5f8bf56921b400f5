"""Riding out an unreachable dependency: backoff with jitter, and an outage logged once.

Every loop that talks to the store or a broker (claiming, settling, heartbeats, the monitor,
LISTEN, Redis) backs off the same way, so that many workers neither spin nor reconnect in
lockstep (FIELD-FAILURES #5), and each outage is logged when it starts and when it ends
rather than once per failed attempt.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

RECONNECT_BASE_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 10.0


class Backoff:
    """Delays that double from `base_seconds` up to `max_seconds`, with full jitter.

    The delay is never shorter than `base_seconds`: full jitter alone may draw a value
    close to zero, and a loop must never spin against a dependency that is down.
    """

    def __init__(
        self,
        *,
        base_seconds: float = RECONNECT_BASE_SECONDS,
        max_seconds: float = RECONNECT_MAX_SECONDS,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if base_seconds <= 0 or max_seconds < base_seconds:
            raise ValueError("backoff needs 0 < base_seconds <= max_seconds")
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self._jitter = jitter
        self.failures = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        ceiling = min(self.max_seconds, self.base_seconds * 2.0 ** min(self.failures, 60))
        self.failures += 1
        return max(self.base_seconds, ceiling * self._jitter())

    def reset(self) -> None:
        self.failures = 0


class Outage:
    """Logs that `what` became unavailable once, and once more when it is back.

    `meanwhile` says what happens until then ("retrying", "polling until it returns"); a
    loop that only waits logs its recovery as a warning, a broker that fell back to
    something else as `back_level` with the word `back`.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        meanwhile: str = "retrying",
        back: str = "available again",
        back_level: int = logging.WARNING,
    ) -> None:
        self._logger = logger
        self._what = what
        self._meanwhile = meanwhile
        self._back = back
        self._back_level = back_level
        self._since: float | None = None
        self._attempts = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, error: BaseException) -> None:
        self._attempts += 1
        if self._since is None:
            self._since = time.monotonic()
            self._logger.warning("%s unavailable, %s: %s", self._what, self._meanwhile, error)
        else:
            self._logger.debug("%s still unavailable: %s", self._what, error)

    def recovered(self) -> None:
        if self._since is None:
            return
        seconds = time.monotonic() - self._since
        self._logger.log(
            self._back_level,
            "%s %s after %.1f s (%d failed attempts)",
            self._what,
            self._back,
            seconds,
            self._attempts,
        )
        self._since = None
        self._attempts = 0


class Breaker:
    """Keeps callers away from a dependency for a backoff after each failure.

    For callers that have somewhere else to go meanwhile (the store instead of Redis, or
    nothing at all for a hint): `closed_for_now` says to skip the dependency, `failed`
    logs the outage once and extends the backoff, `succeeded` ends both.
    """

    def __init__(self, outage: Outage, backoff: Backoff | None = None) -> None:
        self._outage = outage
        self._backoff = backoff or Backoff()
        self._retry_at = 0.0

    @property
    def closed_for_now(self) -> bool:
        return time.monotonic() < self._retry_at

    def failed(self, error: BaseException) -> None:
        self._outage.failed(error)
        self._retry_at = time.monotonic() + self._backoff.next_delay()

    def succeeded(self) -> None:
        if self._backoff.failures or self._outage.ongoing:
            self._outage.recovered()
            self._backoff.reset()
