"""Ending open streams and long polls when the server stops, instead of having them cut.

uvicorn waits for open connections before it runs the lifespan's shutdown, so a stream
that never ends on its own would hold the stop for the whole graceful timeout and then be
cancelled mid-write. The command serving the app calls `begin_shutdown` first; streams
then finish cleanly (an event stream simply ends, a long poll answers with the job as it is).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import TypeVar

from fastapi import FastAPI

T = TypeVar("T")


class Shutdown:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def begin(self) -> None:
        self._event.set()

    @property
    def begun(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


def begin_shutdown(app: FastAPI) -> None:
    """Tell the app's open streams and long polls to end (the server is stopping)."""
    shutdown = getattr(app.state, "conveyor_shutdown", None)
    if isinstance(shutdown, Shutdown):
        shutdown.begin()


async def until_shutdown(stream: AsyncIterable[T], shutdown: Shutdown) -> AsyncIterator[T]:
    """The items of `stream`, ending early (and closing it) once shutdown begins."""
    iterator = aiter(stream)
    stopping = asyncio.ensure_future(shutdown.wait())
    step: asyncio.Future[T] | None = None
    try:
        while not shutdown.begun:
            step = asyncio.ensure_future(anext(iterator))
            await asyncio.wait({step, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                return
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        stopping.cancel()
        if step is not None and not step.done():
            # The stream is mid-step (we were cancelled, or shutdown began): stop that step
            # first, since a generator cannot be closed while it runs.
            step.cancel()
            await asyncio.wait({step})
        if hasattr(iterator, "aclose"):
            await iterator.aclose()
