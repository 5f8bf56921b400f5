"""Waiting until work ends or the caller is asked to stop.

Backoff and outage logging live in `conveyor.outages`, shared with the brokers; the
runtime's loops meet only the store's outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TypeVar

from conveyor import outages
from conveyor.outages import Backoff

__all__ = ["Backoff", "Outage", "race"]

T = TypeVar("T")


class Outage(outages.Outage):
    """An outage of the job store, as the runtime's loops meet it: they retry until it ends."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        super().__init__(logger, f"{what}: store")


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
