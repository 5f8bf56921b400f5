"""PostgreSQL's hot calls straight on asyncpg: enqueue, claim, renew, settle, progress.

Each of these is one autocommit statement, run thousands of times a second by workers and
producers. Through SQLAlchemy a call cost about 0.35 ms of Python before the server saw it
(pool checkout, the checkout's liveness query, execution context, result wrapping), more
than the statement itself. Here the same SQLAlchemy statements are compiled once to
PostgreSQL text with `$n` parameters, and run on asyncpg connections, each of which
prepares a text once and caches it.

The pool (direct_pool.py) hands out connections without a liveness query: asyncpg notices a
socket the server closed (a restart, a terminated backend), and the pool opens a new
connection in its place. A connection that dies during a statement raises at once. When the
server's last word was an error for the statement (it terminated the backend), or asyncpg
refused to start it on a connection such an end left unusable, the statement did not happen,
and it is run again once on a new connection. When the answer was simply lost, it may have
been committed: calls whose repeat is harmless (claims, which an expired lease returns;
renewals, settlements and progress, fenced by their lease tokens) are run again; an enqueue
is not, and reports the failure rather than possibly storing a job twice.

A large batch of jobs is the one exception to a statement per call: its chunks go in one
transaction on one connection (`DirectConnections.transaction`), each statement sent before
the client builds the next (see enqueue.py: insert_in_chunks). Such a transaction is never
run again either.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import asyncpg
from sqlalchemy import ARRAY, Executable
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import URL
from sqlalchemy.exc import DatabaseError, DataError, DBAPIError, IntegrityError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from conveyor.store.direct_pool import DirectPool
from conveyor.store.engine import ConnectFailed, asyncpg_connect_options, dump_json, load_json
from conveyor.store.schema import Document, Instant
from conveyor.store.statements import RowValues

DIRECT_APPLICATION_NAME = "conveyor"
CLOSE_SECONDS = 5.0

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]
# Types whose SQLAlchemy bind processing asyncpg does itself here: documents through the
# jsonb codec set on every connection, instants as aware datetimes, arrays from lists.
_HANDLED_TYPES = (Document, Instant, ARRAY)


@dataclass(frozen=True, slots=True)
class Compiled:
    sql: str
    names: tuple[str, ...]  # the parameter of each $n, in order
    constants: Mapping[str, Any]  # values fixed when the statement was built

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        values = {**self.constants, **parameters}
        try:
            return [values[name] for name in self.names]
        except KeyError as missing:  # as SQLAlchemy would: never a silent NULL
            raise ValueError(f"a value is required for parameter {missing}") from None


@cache
def compiled_for_asyncpg(statement: Executable) -> Compiled:
    """`statement` as asyncpg runs it. Statements are built once (cached), so is this."""
    assert isinstance(statement, ClauseElement)
    compiled = statement.compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)
    if "__[POSTCOMPILE" in compiled.string:
        # IN lists expanded at execution have no fixed text to prepare; use = ANY(array).
        raise ValueError("a statement run directly cannot have an expanding IN list")
    for bind, name in compiled.bind_names.items():
        processing = bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
        if processing is not None and not isinstance(bind.type, _HANDLED_TYPES):
            raise ValueError(f"parameter {name!r} of type {bind.type} needs SQLAlchemy")
    required = {name for bind, name in compiled.bind_names.items() if bind.required}
    fixed = compiled.construct_params(_check=False).items()
    constants = {name: value for name, value in fixed if name not in required}
    return Compiled(compiled.string, tuple(compiled.positiontup or ()), constants)


async def _prepare_connection(connection: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await connection.set_type_codec(
            name, schema="pg_catalog", encoder=dump_json, decoder=load_json, format="text"
        )


class DirectConnections:
    """The direct path's connection pool, made on first use."""

    def __init__(self, url: URL, *, size: int, connect_timeout: float) -> None:
        self._options = asyncpg_connect_options(url)
        self._options["timeout"] = connect_timeout
        self._options["server_settings"] = {"application_name": DIRECT_APPLICATION_NAME}
        self._size = size
        self._pool: DirectPool | None = None
        self._once = DirectStatements(self, repeatable=False)
        self._repeatable = DirectStatements(self, repeatable=True)

    def statements(self, *, repeatable: bool) -> DirectStatements:
        """`Statements` on this pool; `repeatable`: run again if the connection dies."""
        return self._repeatable if repeatable else self._once

    def pool(self) -> DirectPool:
        if self._pool is None:
            self._pool = DirectPool(self._options, size=self._size, prepare=_prepare_connection)
        return self._pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[DirectTransaction]:
        """Statements in one transaction on one connection of the pool, committed when the
        block ends and rolled back if it raises. Never run again: a connection lost on the
        way raises, as for an enqueue (see the module's docstring)."""
        pool = self.pool()
        connection = await _acquire(pool)
        reusable = False
        try:
            await connection.execute("BEGIN")
            transaction = DirectTransaction(connection)
            try:
                yield transaction
                transaction.check_answered()
            except BaseException:
                await transaction.wait_for_in_flight()  # the rollback waits for it
                reusable = await _rolled_back(connection)
                raise
            await connection.execute("COMMIT")
            reusable = True
        finally:
            pool.release(connection, reusable=reusable)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:  # a graceful close waits for statements in flight, which an outage can hang
            async with asyncio.timeout(CLOSE_SECONDS):
                await pool.close()
        except TimeoutError:
            pool.terminate()


class DirectStatements:
    """`Statements` on PostgreSQL through asyncpg; each call is its own transaction."""

    dialect = "postgresql"

    def __init__(self, connections: DirectConnections, *, repeatable: bool) -> None:
        self._connections = connections
        self._repeatable = repeatable

    async def fetch(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Sequence[RowValues]:
        compiled = compiled_for_asyncpg(statement)
        arguments = compiled.arguments(parameters or {})
        pool = self._connections.pool()
        for attempt in (1, 2):
            connection = await _acquire(pool)
            reusable = False  # unless the statement ends with an answer from the server
            try:
                rows: list[RowValues] = await connection.fetch(compiled.sql, *arguments)
                reusable = True
                return rows
            except (asyncpg.OperatorInterventionError, asyncpg.InternalClientError):
                # The server terminated this backend (an idle pooled connection, killed or
                # restarted): the statement's transaction, if it began, was rolled back.
                # Or its end, not yet noticed, left the connection in a state where asyncpg
                # refuses to start the statement: nothing was sent.
                if attempt == 2:
                    raise
            except asyncpg.ConnectionDoesNotExistError as error:
                # The connection died while the statement ran. If the server's last word
                # was an error for it (a terminated backend), it failed and was rolled
                # back; otherwise it may have been committed.
                refused = isinstance(error.__cause__, asyncpg.PostgresError)
                if attempt == 2 or not (self._repeatable or refused):
                    raise
            except asyncpg.PostgresConnectionError:
                raise
            except asyncpg.PostgresError as error:
                reusable = True  # the server refused the statement; the session is idle
                raise _refused(error, compiled) from error
            finally:
                pool.release(connection, reusable=reusable)
            pool.expire_connections()  # its idle siblings likely died with it
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> None:
        await self.fetch(statement, parameters)


class DirectTransaction:
    """`SentStatements` inside a transaction of `DirectConnections.transaction`."""

    dialect = "postgresql"

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self._in_flight: asyncio.Task[list[RowValues]] | None = None

    async def send(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Awaitable[Sequence[RowValues]]:
        if self._in_flight is not None and not self._in_flight.done():
            raise RuntimeError("a statement is still running on this transaction")
        compiled = compiled_for_asyncpg(statement)
        arguments = compiled.arguments(parameters or {})
        self._in_flight = asyncio.ensure_future(self._run(compiled, arguments))
        # One turn of the loop: the task writes the statement to the socket (asyncpg does
        # that before its first wait, for a statement it has prepared) and the server starts.
        await asyncio.sleep(0)
        return self._in_flight

    async def fetch(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Sequence[RowValues]:
        return await (await self.send(statement, parameters))

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> None:
        await self.fetch(statement, parameters)

    async def wait_for_in_flight(self) -> None:
        """Let a statement sent and never awaited end (its error is its sender's concern)."""
        if self._in_flight is not None:
            await asyncio.wait([self._in_flight])
            if not self._in_flight.cancelled():
                self._in_flight.exception()  # retrieved: no "never retrieved" warning

    def check_answered(self) -> None:
        """Before the commit: the last statement sent must have been answered without an
        error (PostgreSQL would end a failed transaction's COMMIT with a rollback)."""
        if self._in_flight is None:
            return
        if not self._in_flight.done():
            raise RuntimeError("a statement sent on this transaction was never awaited")
        if not self._in_flight.cancelled() and self._in_flight.exception() is not None:
            raise RuntimeError("a statement of this transaction failed") from (
                self._in_flight.exception()
            )

    async def _run(self, compiled: Compiled, arguments: list[Any]) -> list[RowValues]:
        try:
            rows: list[RowValues] = await self._connection.fetch(compiled.sql, *arguments)
            return rows
        except (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError):
            raise  # the connection's end, not the statement's: the store is unavailable
        except asyncpg.PostgresError as error:
            raise _refused(error, compiled) from error


async def _acquire(pool: DirectPool) -> asyncpg.Connection:
    try:
        return await pool.acquire()
    except Exception as error:  # as SQLAlchemy counts it: no connection, no store
        raise ConnectFailed(f"connecting failed: {error}") from error


async def _rolled_back(connection: asyncpg.Connection) -> bool:
    """Roll back after a failure; whether the connection is fit to be used again."""
    if connection.is_closed():
        return False
    try:
        await connection.execute("ROLLBACK")
    except Exception:  # the failure was the connection's: the caller raises the original
        return False
    return True


def _refused(error: asyncpg.PostgresError, compiled: Compiled) -> DBAPIError:
    """A statement the database refused, as the same SQLAlchemy error either path raises."""
    kind: type[DBAPIError] = DatabaseError
    if isinstance(error, asyncpg.IntegrityConstraintViolationError):
        kind = IntegrityError
    elif isinstance(error, asyncpg.DataError):
        kind = DataError
    return kind(compiled.sql, None, error)
