"""Connection trouble shared by the brokers: logging an outage once, reconnecting with jitter."""

from __future__ import annotations

import logging
import random
import time

RECONNECT_BASE_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 10.0


class Outage:
    """Logs a lost connection once and its end once, not every failed attempt between."""

    def __init__(self, logger: logging.Logger, what: str, *, meanwhile: str = "polling") -> None:
        self._logger = logger
        self._what = what
        self._meanwhile = meanwhile
        self._since: float | None = None
        self._attempts = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, error: BaseException) -> None:
        self._attempts += 1
        if self._since is None:
            self._since = time.monotonic()
            self._logger.warning(
                "%s unavailable, %s until it returns: %s", self._what, self._meanwhile, error
            )
        else:
            self._logger.debug("%s still unavailable: %s", self._what, error)

    def recovered(self) -> None:
        if self._since is not None:
            seconds = time.monotonic() - self._since
            self._logger.info(
                "%s restored after %.1f s (%d attempts)", self._what, seconds, self._attempts
            )
        self._since = None
        self._attempts = 0


def reconnect_delay(attempt: int) -> float:
    """Exponential backoff with jitter, so many workers do not reconnect in lockstep."""
    ceiling = min(RECONNECT_MAX_SECONDS, RECONNECT_BASE_SECONDS * 2.0 ** min(attempt, 30))
    return ceiling * random.uniform(0.5, 1.0)
