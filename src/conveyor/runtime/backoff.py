"""Waiting: out an outage (backoff with jitter, logged once), or until asked to stop.

Every loop that talks to the store (claiming, settling, heartbeats, the monitor) backs off
the same way when the store is unreachable, so that many workers neither spin nor
reconnect in lockstep (FIELD-FAILURES #5), and each outage is logged when it starts and
when it ends rather than once per failed attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

RECONNECT_BASE_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 10.0


class Backoff:
    """Delays that double from `base_seconds` up to `max_seconds`, with full jitter.

    The delay is never shorter than `base_seconds`: full jitter alone may draw a value
    close to zero, and a loop must never spin against a store that is down.
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
    """Logs that `what` became unavailable once, and once more when it is back."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._logger = logger
        self._what = what
        self._since: float | None = None
        self._attempts = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, error: BaseException) -> None:
        self._attempts += 1
        if self._since is None:
            self._since = time.monotonic()
            self._logger.warning("%s: store unavailable, retrying: %s", self._what, error)
        else:
            self._logger.debug("%s: store still unavailable: %s", self._what, error)

    def recovered(self) -> None:
        if self._since is None:
            return
        seconds = time.monotonic() - self._since
        self._logger.warning(
            "%s: store available again after %.1f s (%d failed attempts)",
            self._what,
            seconds,
            self._attempts,
        )
        self._since = None
        self._attempts = 0


async def race(
    work: Awaitable[T], stop: asyncio.Event, *, timeout: float | None = None
) -> T | None:
    """Await `work` until it ends, `stop` is set or `timeout` passes (then cancel it)."""
    if stop.is_set():
        _close(work)
        return None
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, stopped):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
    if task.cancelled():
        return None
    return task.result()


def _close(work: Awaitable[object]) -> None:
    # An un-awaited coroutine would warn (and warnings are errors in the test suite).
    close = getattr(work, "close", None)
    if close is not None:
        close()
