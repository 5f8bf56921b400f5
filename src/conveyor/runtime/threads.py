"""The thread pool that runs plain-function handlers, whose threads never delay exit.

`concurrent.futures.ThreadPoolExecutor` joins its threads when the interpreter exits. A
thread cannot be killed, so one handler that ignores `ctx.cancelled` (a long `time.sleep`,
a stuck C call) would keep a stopped worker's process alive for as long as it runs, after
its job was already released to another worker. Here the threads are daemons: once the
worker returns, every job it held has been handed back, and whatever still runs in a
thread is abandoned when the process exits.
"""

from __future__ import annotations

import concurrent.futures
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_WorkItem = tuple["concurrent.futures.Future[Any]", Callable[[], Any]]


class HandlerThreads(concurrent.futures.Executor):
    """Up to `max_workers` daemon threads, started as work arrives and reused when idle."""

    def __init__(self, max_workers: int, *, name: str = "conveyor-job") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self._max_workers = max_workers
        self._name = name
        self._work: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._closed = False
        self._busy = 0

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        with self._lock:
            if self._closed:
                # The same refusal as ThreadPoolExecutor's, which the runner relies on.
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: concurrent.futures.Future[T] = concurrent.futures.Future()
            self._work.put((future, functools.partial(fn, *args, **kwargs)))
            self._add_thread_unless_one_is_idle()
            return future

    @property
    def busy(self) -> int:
        """Calls running now (after shutdown: the ones to be abandoned at exit)."""
        with self._lock:
            return self._busy

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            if cancel_futures:
                self._cancel_queued()
            for _ in self._threads:
                self._work.put(None)  # one stop marker per thread
        if wait:
            for thread in self._threads:
                thread.join()

    def _add_thread_unless_one_is_idle(self) -> None:
        if self._idle.acquire(blocking=False) or len(self._threads) >= self._max_workers:
            return
        thread = threading.Thread(
            target=self._serve, name=f"{self._name}-{len(self._threads)}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            future, call = item
            if future.set_running_or_notify_cancel():
                self._count_busy(1)
                _run(future, call)
                self._count_busy(-1)
            del item, future, call  # drop references to the finished call's arguments
            self._idle.release()

    def _count_busy(self, change: int) -> None:
        with self._lock:
            self._busy += change

    def _cancel_queued(self) -> None:
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[0].cancel()


def _run(future: concurrent.futures.Future[Any], call: Callable[[], Any]) -> None:
    try:
        result = call()
    except BaseException as error:  # handed to whoever awaits the future, as the pool does
        future.set_exception(error)
    else:
        future.set_result(result)
