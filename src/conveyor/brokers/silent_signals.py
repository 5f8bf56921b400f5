"""`Signals` for a deployment without Redis: nothing is sent, nothing is heard.

Every consumer then learns from the store alone, as it always also does: a worker sees a
cancel at its next heartbeat, `watch` sees progress once the worker has written it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

from conveyor.ports import CancelNotice, ProgressNotice

N = TypeVar("N")


class SilentSignals:
    """Publishing does nothing; listeners hear nothing, and their iterators end at close."""

    def __init__(self) -> None:
        self._closed = asyncio.Event()

    async def publish_cancel(self, notice: CancelNotice) -> None:
        return

    async def publish_progress(self, notices: Sequence[ProgressNotice]) -> None:
        return

    @asynccontextmanager
    async def cancellations(self) -> AsyncIterator[AsyncIterator[CancelNotice]]:
        yield NothingUntilClosed(self._closed)

    @asynccontextmanager
    async def follow_progress(self, job_id: str) -> AsyncIterator[AsyncIterator[ProgressNotice]]:
        yield NothingUntilClosed(self._closed)

    async def close(self) -> None:
        self._closed.set()


class NothingUntilClosed(Generic[N]):
    """An iterator that yields nothing and ends once `closed` is set."""

    def __init__(self, closed: asyncio.Event) -> None:
        self._closed = closed

    def __aiter__(self) -> NothingUntilClosed[N]:
        return self

    async def __anext__(self) -> N:
        await self._closed.wait()
        raise StopAsyncIteration
