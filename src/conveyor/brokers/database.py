"""The database broker: workers claim straight from the job store, which also wakes them.

PostgreSQL: the store runs `pg_notify(NOTIFY_CHANNEL, queue)` in every transaction that
makes jobs ready; one LISTEN connection per broker wakes the waiters of that queue.
SQLite: `announce` wakes waiters in this process at once; commits from other processes are
noticed by watching `PRAGMA data_version` on a dedicated connection, which costs no lock.

Wake-ups are hints. Every wait also ends after the poll interval (with jitter, so idle
workers do not query in lockstep), so a lost notification costs latency, never a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
from sqlalchemy.engine import URL

from conveyor.core.job import JobState
from conveyor.outages import Backoff, Outage
from conveyor.ports import Claim, ReadyJob, Reconciliation
from conveyor.store import schema
from conveyor.store.engine import asyncpg_connect_options
from conveyor.store.notify import NOTIFY_CHANNEL
from conveyor.store.sql import SqlJobStore

log = logging.getLogger(__name__)

WAIT_JITTER = 0.2
"""Each wait lasts between 80% and 100% of its bound: spread out, never past `timeout`."""

CHANGE_CHECK_SECONDS = 0.075
"""How often SQLite is asked whether another process committed (only while someone waits)."""

LISTENER_APPLICATION_NAME = "conveyor-listener"
"""Shown in pg_stat_activity, so operators (and tests) can tell the LISTEN connection apart."""

CONNECT_TIMEOUT_SECONDS = 10.0
# A connection can die silently (a dropped network path); a cheap query every so often
# notices, where waiting for notifications alone never would.
HEALTH_CHECK_SECONDS = 30.0
HEALTH_CHECK_TIMEOUT_SECONDS = 5.0


def broker_outage(what: str) -> Outage:
    """A lost wake-up channel: workers only poll until it returns."""
    return Outage(
        log, what, meanwhile="polling until it returns", back="restored", back_level=logging.INFO
    )


class DatabaseBroker:
    """The `Broker` of a store without Redis: SQLite or PostgreSQL alone."""

    def __init__(
        self,
        store: SqlJobStore,
        *,
        poll_interval: float,
        change_check_interval: float = CHANGE_CHECK_SECONDS,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0 seconds")
        self._store = store
        self._poll_interval = poll_interval
        self._change_check_interval = change_check_interval
        self._waiters = _Waiters()
        self._listener: _NotificationListener | None = None
        self._background: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def listening(self) -> bool:
        """True while PostgreSQL notifications reach this broker; waits only poll otherwise."""
        return self._listener is not None and self._listener.listening

    async def ping(self) -> None:
        """The database is the broker: it answers when the store does."""
        await self._store.ping()

    async def start(self) -> None:
        """Start listening (PostgreSQL) or watching for commits (a SQLite file).

        Returns once the first connection attempt has ended, successful or not: a database
        that is down delays wake-ups, never the worker's start.
        """
        if self._background is not None or self._closed:
            return
        if self._store.dialect_name == "postgresql":
            self._listener = _NotificationListener(self._store.engine.url, self._waiters)
            self._background = asyncio.create_task(self._listener.run(), name="conveyor-listen")
            await self._listener.first_attempt.wait()
        elif path := _sqlite_file(self._store.engine.url):
            watcher = _ChangeWatcher(path, self._waiters, self._change_check_interval)
            self._background = asyncio.create_task(watcher.run(), name="conveyor-watch")

    async def claim(
        self, *, worker_id: str, queues: Collection[str], limit: int, lease_seconds: float
    ) -> list[Claim]:
        return await self._store.claim(
            worker_id=worker_id, queues=queues, limit=limit, lease_seconds=lease_seconds
        )

    async def announce(self, ready: Sequence[ReadyJob]) -> None:
        # On PostgreSQL the NOTIFY arrives too; waking now saves its round trip.
        for queue in {job.queue for job in ready}:  # once per queue, not per job of a batch
            self._waiters.wake(queue)

    async def reconcile(self, *, limit: int) -> Reconciliation:
        return Reconciliation()  # claims read the store itself: nothing can be missing

    async def wait_for_work(self, queues: Collection[str], timeout: float) -> None:
        bound = min(timeout, self._poll_interval) * random.uniform(1 - WAIT_JITTER, 1)
        if bound <= 0:
            return
        waiting = self._waiters.waiting(frozenset(queues))
        with waiting as woken, contextlib.suppress(TimeoutError):
            async with asyncio.timeout(bound):
                await woken.wait()

    async def close(self) -> None:
        """Stop the background connection. Waits still in progress end by their timeout."""
        self._closed = True
        task, self._background = self._background, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# Waiters -------------------------------------------------------------------------------


@dataclass(eq=False)
class _Waiter:
    queues: frozenset[str]  # empty: every queue
    woken: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, queue: str) -> bool:
        return not self.queues or queue in self.queues


class _Waiters:
    """The idle callers of `wait_for_work` in this process, and the queues each awaits."""

    def __init__(self) -> None:
        self._waiters: set[_Waiter] = set()
        self.present = asyncio.Event()

    @contextlib.contextmanager
    def waiting(self, queues: frozenset[str]) -> Iterator[asyncio.Event]:
        waiter = _Waiter(queues)
        self._waiters.add(waiter)
        self.present.set()
        try:
            yield waiter.woken
        finally:
            self._waiters.discard(waiter)
            if not self._waiters:
                self.present.clear()

    def wake(self, queue: str) -> None:
        for waiter in self._waiters:
            if waiter.wants(queue):
                waiter.woken.set()

    def wake_all(self) -> None:
        for waiter in self._waiters:
            waiter.woken.set()

    def wake_exactly(self, queues: frozenset[str]) -> None:
        for waiter in self._waiters:
            if waiter.queues == queues:
                waiter.woken.set()

    def queue_sets(self) -> set[frozenset[str]]:
        return {waiter.queues for waiter in self._waiters}


# PostgreSQL: LISTEN ----------------------------------------------------------------------


class _NotificationListener:
    """Holds one LISTEN connection, reconnecting for as long as the broker runs."""

    def __init__(self, url: URL, waiters: _Waiters) -> None:
        self._options = _asyncpg_options(url)
        self._waiters = waiters
        self._outage = broker_outage(f"PostgreSQL notifications (channel {NOTIFY_CHANNEL})")
        self.listening = False
        self.first_attempt = asyncio.Event()
        self._connected = False

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            self._connected = False
            try:
                await self._listen_once()
            except Exception as error:  # whatever went wrong, a worker must keep running
                self._outage.failed(error)
            self.first_attempt.set()
            # After a connection that was up, the backoff starts again from its shortest delay.
            if self._connected:
                backoff.reset()
            await asyncio.sleep(backoff.next_delay())

    async def _listen_once(self) -> None:
        import asyncpg  # only installed with the postgres extra

        connection = await asyncpg.connect(**self._options, timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            await self._serve(connection)
        finally:
            self.listening = False
            await _close_quietly(connection)

    async def _serve(self, connection: Any) -> None:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        await connection.add_listener(NOTIFY_CHANNEL, self._deliver)
        self.listening = self._connected = True
        self._outage.recovered()
        self.first_attempt.set()
        # Notifications sent while nobody listened are gone: let every waiter look now.
        self._waiters.wake_all()
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEALTH_CHECK_SECONDS):
                    await lost.wait()
            if not lost.is_set():
                await connection.fetchval("SELECT 1", timeout=HEALTH_CHECK_TIMEOUT_SECONDS)
        raise ConnectionError("the LISTEN connection was closed")

    def _deliver(self, _connection: Any, _pid: int, _channel: str, queue: str) -> None:
        if queue:
            self._waiters.wake(queue)
        else:
            self._waiters.wake_all()


def _asyncpg_options(url: URL) -> dict[str, Any]:
    options = asyncpg_connect_options(url)
    options["server_settings"] = {"application_name": LISTENER_APPLICATION_NAME}
    return options


async def _close_quietly(connection: Any) -> None:
    if connection.is_closed():
        return
    try:
        await connection.close(timeout=HEALTH_CHECK_TIMEOUT_SECONDS)
    except Exception:  # closing a broken connection may fail; dropping it is enough
        connection.terminate()


# SQLite: watch for commits ---------------------------------------------------------------


def _sqlite_file(url: URL) -> str | None:
    """The database file, or None for an in-memory database (no other process sees it)."""
    database = url.database
    if not database or database == ":memory:" or url.query.get("mode") == "memory":
        return None
    return database


class _ChangeWatcher:
    """Wakes waiters when another connection commits and their queues have ready jobs.

    `PRAGMA data_version` changes whenever another connection (in any process) commits,
    and reading it takes no lock; only then do we ask, through the ready-jobs index,
    whether the queues someone waits on have work.
    """

    def __init__(self, path: str, waiters: _Waiters, interval: float) -> None:
        self._path = path
        self._waiters = waiters
        self._interval = interval
        self._outage = broker_outage(f"SQLite change watcher on {path}")

    async def run(self) -> None:
        connection = await self._connect()
        try:
            await self._watch(connection)
        finally:
            await connection.close()

    async def _connect(self) -> aiosqlite.Connection:
        backoff = Backoff()
        while True:
            try:
                # isolation_level=None: autocommit, so no read transaction pins a snapshot.
                return await aiosqlite.connect(self._path, isolation_level=None, timeout=1.0)
            except sqlite3.Error as error:
                self._outage.failed(error)
            await asyncio.sleep(backoff.next_delay())

    async def _watch(self, connection: aiosqlite.Connection) -> None:
        seen: int | None = None
        while True:
            # Changes made while nobody waited are caught by the first check afterwards.
            await self._waiters.present.wait()
            try:
                version = await _fetch_one(connection, "PRAGMA data_version")
                if version != seen:
                    seen = version
                    await self._wake_ready(connection)
                self._outage.recovered()
            except sqlite3.Error as error:
                self._outage.failed(error)
            await asyncio.sleep(self._interval)

    async def _wake_ready(self, connection: aiosqlite.Connection) -> None:
        for queues in self._waiters.queue_sets():
            statement, parameters = _ready_query(queues)
            if await _fetch_one(connection, statement, parameters):
                self._waiters.wake_exactly(queues)


READY_INDEX = "ix_conveyor_jobs_ready"
"""The partial index of queued jobs (see store/schema.py): it holds only ready jobs."""


def _ready_query(queues: frozenset[str]) -> tuple[str, tuple[str, ...]]:
    # Left to itself, SQLite answers "any queued job?" by scanning a full-table index,
    # which is slow when many finished jobs are kept. The partial index of queued jobs
    # answers with its first entry; the state is inlined so that SQLite may use it.
    condition = f"state = '{JobState.QUEUED.value}'"
    if queues:
        condition += " AND queue IN (" + ", ".join("?" * len(queues)) + ")"
    # A paused queue's backlog is not work: waking for it would only make idle workers
    # take SQLite's write lock to claim nothing.
    condition += f" AND queue NOT IN (SELECT name FROM {schema.queues.name} WHERE paused)"
    source = f"{schema.jobs.name} INDEXED BY {READY_INDEX}"
    return f"SELECT EXISTS (SELECT 1 FROM {source} WHERE {condition})", tuple(queues)


async def _fetch_one(
    connection: aiosqlite.Connection, statement: str, parameters: Sequence[str] = ()
) -> Any:
    async with connection.execute(statement, parameters) as cursor:
        row = await cursor.fetchone()
    return None if row is None else row[0]
