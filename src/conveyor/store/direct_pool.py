"""The connections of the direct path (direct.py): up to `size` asyncpg connections, opened
on demand, handed out last-in first-out, each for one autocommit statement at a time.

asyncpg's own pool cost about 70 µs of the event loop's time per statement on top of the
statement, a tenth of a one-by-one enqueue: every release ran as a task of its own (a
shielded coroutine, one more turn of the loop), re-armed an inactivity timer, and every
checkout wrapped the connection in a proxy. The direct path needs none of it: its
statements leave no session state to reset, and a checkout never outlives a statement.
Here a checkout of an idle connection does not wait at all, and a release is a plain call
that hands the connection to the longest waiting caller, if any.

A connection the server closed (a restart, a terminated backend) is noticed by asyncpg
and replaced at the next checkout. Idle connections stay open until the pool closes, as
in SQLAlchemy's pool: a burst's connections serve the next burst. A connection whose
statement did not end normally (cancelled, or failed other than by the server's answer)
is discarded, not reused: its protocol may still be busy with the statement's end.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg


class PoolClosed(Exception):
    """The pool was closed: it hands out no more connections."""


class DirectPool:
    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        size: int,
        prepare: Callable[[asyncpg.Connection], Awaitable[None]],
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs room for at least one connection")
        self._options = dict(options)
        self._size = size
        self._prepare = prepare
        self._idle: list[asyncpg.Connection] = []  # the last released is handed out first
        self._busy: set[asyncpg.Connection] = set()
        self._stale: set[asyncpg.Connection] = set()  # busy when expired: closed on release
        self._slots_taken = 0  # connections open or opening, idle or busy
        # A waiter receives a connection, or None: a slot to open one in.
        self._waiting: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._closed = False
        self._all_released: asyncio.Event | None = None

    @property
    def size(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        return self._closed

    def connections(self) -> int:
        """Connections open or opening, idle or in use."""
        return self._slots_taken

    def waiting(self) -> int:
        """Callers waiting for a connection."""
        return sum(not waiter.done() for waiter in self._waiting)

    async def acquire(self) -> asyncpg.Connection:
        """An open connection for one statement; `release` it afterwards, whatever happens."""
        if self._closed:
            raise PoolClosed("the connection pool is closed")
        while self._idle:
            connection = self._idle.pop()
            if not connection.is_closed():
                self._busy.add(connection)
                return connection
            self._give_up_slot()  # the server closed it while it was idle
        if self._slots_taken < self._size:
            self._slots_taken += 1
        else:
            handed = await self._wait()
            if handed is not None:
                self._busy.add(handed)
                return handed
        connection = await self._open()
        if self.closed:  # closed while it opened: close() no longer waits for it
            connection.terminate()
            self._give_up_slot()
            raise PoolClosed("the connection pool is closed")
        self._busy.add(connection)
        return connection

    def release(self, connection: asyncpg.Connection, *, reusable: bool = True) -> None:
        """Give back a connection from `acquire`. `reusable=False`: its statement did not
        end normally, so it is closed instead of being handed out again."""
        if connection not in self._busy:  # released after terminate(): already counted out
            connection.terminate()
            return
        self._busy.remove(connection)
        stale = connection in self._stale
        self._stale.discard(connection)
        if not reusable or stale or connection.is_closed():
            connection.terminate()
            self._give_up_slot()
        elif not self._hand_over(connection):
            self._idle.append(connection)
        if not self._busy and self._all_released is not None:
            self._all_released.set()

    def expire_connections(self) -> None:
        """Close the idle connections now and the busy ones when released: after one of
        them died, its siblings likely died with it (a server restart)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.terminate()
            self._give_up_slot()
        self._stale |= self._busy

    async def close(self) -> None:
        """Hand out no more connections, wait for the busy ones to come back, and close
        every connection gracefully."""
        self._closed = True
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed("the connection pool is closed"))
        while self._busy:
            self._all_released = asyncio.Event()
            await self._all_released.wait()
        idle, self._idle = self._idle, []
        self._slots_taken -= len(idle)
        await asyncio.gather(*(connection.close() for connection in idle), return_exceptions=True)

    def terminate(self) -> None:
        """Close every connection at once, busy or not (when a graceful close hangs)."""
        self._closed = True
        for connection in [*self._idle, *self._busy]:
            connection.terminate()
        self._slots_taken -= len(self._idle) + len(self._busy)
        self._idle.clear()
        self._busy.clear()

    async def _wait(self) -> asyncpg.Connection | None:
        waiter: asyncio.Future[asyncpg.Connection | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Cancelled after being handed a connection or a slot: pass it on, or it leaks.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is None:
                    self._give_up_slot()
                else:
                    self._busy.add(handed)
                    self.release(handed)
            raise

    async def _open(self) -> asyncpg.Connection:
        """A new connection, in a slot the caller has taken (and which a failure frees)."""
        try:
            connection = await asyncpg.connect(**self._options)
        except BaseException:
            self._give_up_slot()
            raise
        try:
            await self._prepare(connection)
        except BaseException:
            connection.terminate()
            self._give_up_slot()
            raise
        return connection

    def _hand_over(self, handed: asyncpg.Connection | None) -> bool:
        """Give a connection (or, as None, a free slot) to the longest waiting caller."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():  # a cancelled waiter stays in the queue until reached
                waiter.set_result(handed)
                return True
        return False

    def _give_up_slot(self) -> None:
        if not self._closed and self._hand_over(None):
            return  # the slot passes to a waiter, which opens a connection in it
        self._slots_taken -= 1
