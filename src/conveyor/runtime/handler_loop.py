"""The handler loop: an event loop on a thread of its own, where a worker runs async handlers.

The worker's own event loop (its control loop) claims jobs, settles outcomes, runs the
monitor and waits on the broker. A handler that blocks the loop it runs on (`time.sleep`
in an `async def`, a long computation) stalls everything on that loop, and a database
transaction the loop has in flight stays open for the whole stall: aiosqlite runs BEGIN,
each statement and COMMIT as separate hops back to the loop. On SQLite that transaction
holds the database-wide write lock, so the heartbeat thread could renew no lease and a
healthy job would be rescued while it runs (DESIGN §1.7); on PostgreSQL it holds row
locks. So async handlers run here, and the control loop runs no handler code.

Awaiting `HandlerLoop.submit(handler).result()` on the control loop behaves like awaiting
the handler right there (and a caller that would rather not hold a task of its own per call,
as the worker, registers `when_done` and reads `outcome()` there, and calls `cancel()`):

* the handler runs with a copy of the caller's contextvars;
* cancelling the awaiting task (or `cancel()`) cancels the handler's task and then waits
  it out, so a handler that catches the cancellation and returns still has its result, and
  one that unwinds gets to finish its cleanup first;
* what the handler raises is raised to the caller, `SystemExit` and `KeyboardInterrupt`
  included, never out of the handler loop (which keeps serving the other handlers).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, cast

from conveyor.runtime.cross_thread import CrossThreadCalls
from conveyor.runtime.event_loops import LoopFactory

T = TypeVar("T")

log = logging.getLogger(__name__)

# What still runs on the loop when it stops (handlers that ignored their cancellation,
# tasks they spawned) gets this long to unwind after one more cancel.
UNWIND_SECONDS = 1.0


class HandlerLoop:
    """Runs async handlers on a daemon thread; used from the control loop only."""

    def __init__(
        self,
        *,
        name: str = "conveyor-handlers",
        loop_factory: LoopFactory = asyncio.new_event_loop,
    ) -> None:
        self._name = name
        self._new_loop = loop_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._calls: set[HandlerCall[Any]] = set()
        self._inbox: CrossThreadCalls | None = None  # calls to the handler loop
        self._outboxes: dict[asyncio.AbstractEventLoop, CrossThreadCalls] = {}  # back to callers

    def start(self) -> None:
        self._loop = self._new_loop()
        self._inbox = CrossThreadCalls(self._loop)
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self._thread.start()

    def submit(self, handler: Callable[[], Awaitable[T]]) -> HandlerCall[T]:
        """Call `handler()` on the handler loop; RuntimeError if that loop is not running."""
        if self._loop is None or self._inbox is None or self._stopping:
            raise RuntimeError("the handler loop is not running")
        control_loop = asyncio.get_running_loop()
        outbox = self._outboxes.get(control_loop)
        if outbox is None:
            outbox = self._outboxes[control_loop] = CrossThreadCalls(control_loop)
        call = HandlerCall(self._loop, self._inbox, outbox, handler)
        self._calls.add(call)
        call.when_done(self._calls.discard)
        return call

    async def stop(self, *, timeout: float) -> bool:
        """Cancel what still runs there and end the thread.

        False if the thread is still busy at `timeout` (a handler blocks the loop): it is
        left to end with the process, and whoever still waits on one of its calls is
        released with CancelledError.
        """
        self._stopping = True
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return True
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, timeout)
        for call in list(self._calls):
            call.abandon()
        if thread.is_alive():
            log.warning(
                "%s: an async handler ignored the stop and still blocks the loop; its thread "
                "ends with the process",
                self._name,
            )
        return not thread.is_alive()

    def _main(self) -> None:
        loop = self._loop
        assert loop is not None  # start() made it
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            loop.run_until_complete(_wind_down())
        except Exception:
            log.exception("the handler loop %s failed", self._name)
        finally:
            loop.close()


class HandlerCall(Generic[T]):
    """One handler running as a task of the handler loop, followed from the control loop.

    Its outcome is recorded on the control loop (through `outbox`) when the handler's task
    ends, and the `when_done` callbacks run there and then; the handler loop hears of a
    cancel through `inbox`. No future or task of the control loop is made unless someone
    awaits `result()`: the worker follows thousands of calls a second by callback alone.
    """

    __slots__ = (
        "_callbacks",
        "_cancelled",
        "_done",
        "_error",
        "_handler_loop",
        "_inbox",
        "_outbox",
        "_result",
        "_task",
    )

    def __init__(
        self,
        handler_loop: asyncio.AbstractEventLoop,
        inbox: CrossThreadCalls,
        outbox: CrossThreadCalls,
        handler: Callable[[], Awaitable[T]],
    ) -> None:
        self._handler_loop = handler_loop
        self._inbox = inbox
        self._outbox = outbox
        self._task: asyncio.Task[None] | None = None  # set and used on the handler loop
        self._done = False
        self._result: T | None = None
        self._error: BaseException | None = None
        self._cancelled = False
        self._callbacks: list[Callable[[HandlerCall[T]], object]] = []
        inbox.post(self._start, handler, contextvars.copy_context())

    async def result(self) -> T:
        """What the handler returned or raised; a cancellation is passed on and waited out."""
        while not self._done:
            # Awaited through a waiter of its own, so that cancelling the caller cancels
            # the waiter, and the call goes on until the handler has unwound.
            waiter = asyncio.get_running_loop().create_future()
            wake = functools.partial(_resolve, waiter)
            self._callbacks.append(wake)
            try:
                await waiter
            except asyncio.CancelledError:
                if wake in self._callbacks:
                    self._callbacks.remove(wake)
                self.cancel()
        return self.outcome()

    def outcome(self) -> T:
        """Once done: what the handler returned; raises what it raised (CancelledError if
        it was cancelled or abandoned)."""
        if not self._done:
            raise asyncio.InvalidStateError("the handler has not ended yet")
        if self._cancelled:
            raise asyncio.CancelledError
        if self._error is not None:
            raise self._error
        return cast(T, self._result)

    def cancel(self) -> None:
        """Cancel the handler's task; its outcome follows once the handler has unwound."""
        if self._done:
            return
        try:
            self._inbox.post(self._cancel_task)
        except RuntimeError:  # the handler loop is closed: nothing will answer
            self.abandon()

    def abandon(self) -> None:
        """Stop waiting for a handler loop that will never answer: it ends as cancelled."""
        self._settle(None, None, True)

    def when_done(self, callback: Callable[[HandlerCall[T]], object]) -> None:
        """Call `callback(self)` on the control loop once the call has ended (now if it has)."""
        if self._done:
            callback(self)
        else:
            self._callbacks.append(callback)

    # On the handler loop -------------------------------------------------------------
    def _start(self, handler: Callable[[], Awaitable[T]], context: contextvars.Context) -> None:
        self._task = self._handler_loop.create_task(self._run(handler), context=context)

    def _cancel_task(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self, handler: Callable[[], Awaitable[T]]) -> None:
        try:
            result = await handler()
        except asyncio.CancelledError as error:
            if _being_cancelled():
                self._deliver(cancelled=True)
            else:  # raised by the handler on its own: an error like any other
                self._deliver(error=error)
        except BaseException as error:  # the caller decides, even for SystemExit
            self._deliver(error=error)
        else:
            self._deliver(result=result)

    def _deliver(
        self, *, result: Any = None, error: BaseException | None = None, cancelled: bool = False
    ) -> None:
        with contextlib.suppress(RuntimeError):  # the control loop is closed: nobody waits
            self._outbox.post(self._settle, result, error, cancelled)

    # On the control loop -------------------------------------------------------------
    def _settle(self, result: T | None, error: BaseException | None, cancelled: bool) -> None:
        if self._done:  # abandoned meanwhile
            return
        self._done, self._result, self._error, self._cancelled = True, result, error, cancelled
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception as failure:  # one failing callback must not skip the others
                asyncio.get_running_loop().call_exception_handler(
                    {"message": f"a callback of {self!r} failed", "exception": failure}
                )


def _resolve(waiter: asyncio.Future[None], _call: object) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _being_cancelled() -> bool:
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


async def _wind_down() -> None:
    """Cancel what handlers left on the stopped loop and give it a moment to unwind."""
    loop = asyncio.get_running_loop()
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(UNWIND_SECONDS):
            if tasks:
                await asyncio.wait(tasks)
            await loop.shutdown_asyncgens()
