"""Calls handed to an event loop from other threads, many per wake-up.

`loop.call_soon_threadsafe` writes to the loop's wake-up pipe on every call. A worker hands
each job to its handler loop and each outcome back, so under load that was two pipe writes
and two wake-ups per job. CrossThreadCalls queues the calls and wakes the loop only when the
queue was empty: a busy loop finds many calls per wake-up.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any


class CrossThreadCalls:
    """Runs posted calls on `loop`, in the order posted, from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._calls: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._wake_up_pending = False

    def post(self, call: Callable[..., object], *arguments: Any) -> None:
        """Run `call(*arguments)` on the loop soon; RuntimeError if the loop is closed."""
        with self._lock:
            self._calls.append((call, arguments))
            if self._wake_up_pending:
                return
            self._wake_up_pending = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:
            with self._lock:
                self._wake_up_pending = False
            raise

    def _deliver(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, deque()
            self._wake_up_pending = False
        for call, arguments in calls:
            try:
                call(*arguments)
            except Exception as error:  # one failing call must not lose the others
                self._loop.call_exception_handler(
                    {
                        "message": f"a call posted from another thread failed: {call!r}",
                        "exception": error,
                    }
                )
