"""`blocking()`: the one way to call Conveyor's async API from synchronous code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _BackgroundLoop:
    """One event loop on a daemon thread, shared by every `blocking()` call."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._loop.run_forever, name="conveyor-blocking", daemon=True
        )
        thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()


_background: _BackgroundLoop | None = None
_background_lock = threading.Lock()


def blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a Conveyor coroutine from synchronous code: `blocking(app.enqueue("t", {...}))`.

    This is the one way to call the API without async (Flask, Django, scripts); there are
    no sync twins of the methods. Inside async code, `await` instead.
    """
    global _background
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coroutine.close()
        raise RuntimeError("blocking() was called inside a running event loop; use await")
    with _background_lock:
        if _background is None:
            _background = _BackgroundLoop()
    return _background.run(coroutine)
