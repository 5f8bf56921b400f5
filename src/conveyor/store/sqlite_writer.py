"""SQLite's hot writes, each a whole transaction in one hop to a thread of its own.

Claims, settlements, renewals, progress and plain enqueues are short transactions that
workers run hundreds of times a second. Through SQLAlchemy's aiosqlite connection each one
took four hops between the event loop and aiosqlite's thread (BEGIN, statement, counters,
COMMIT), and the database-wide write lock was held across all of them: while a worker's
loop was busy running jobs, its transaction, and every other process's writes, waited for
that loop. With two worker processes on one file, 2.7 ms of lock per transaction, of which
SQLite itself needed a fraction.

Here the event loop hands the whole operation (the same store functions PostgreSQL runs
on asyncpg) to a thread that holds a connection of its own, and gets the result back once:
BEGIN IMMEDIATE, the statements, COMMIT, all without the loop. The store functions are
coroutines that await only their statements, and these statements finish at once, so the
thread runs each coroutine to its end with a single `send`.

A caller cancelled while its transaction runs does not stop it (as with a statement sent
to PostgreSQL): what the transaction wrote stays written.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Executable
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from conveyor.store.engine import dump_json, load_json
from conveyor.store.statements import RowValues, Statements

T = TypeVar("T")

# The engine's dialect, as the writer's connections need it: documents in and out as the
# engine writes and reads them.
_DIALECT = SQLiteDialect_pysqlite(
    dbapi=sqlite3, json_serializer=dump_json, json_deserializer=load_json
)

Operation = Callable[[Statements], Awaitable[T]]


class SqliteWriter:
    """Runs write operations on one SQLite file, in order, on a daemon thread."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, operation: Operation[T]) -> T:
        """`operation(statements)` in a transaction of its own, committed before this returns."""
        if self._thread is None:  # first use, or first since close(): as an engine reopens
            self._thread = threading.Thread(
                target=self._serve,
                args=(self._requests,),
                name="conveyor-sqlite-writer",
                daemon=True,
            )
            self._thread.start()
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._requests.put(_Request(operation, done))
        # Shielded: a cancelled caller leaves the transaction to finish (see the docstring).
        return await asyncio.shield(done)

    def close(self) -> None:
        """Stop the thread once the operations already handed to it are done."""
        if self._thread is not None:
            self._requests.put(None)
            self._requests = queue.SimpleQueue()  # for a thread started by a later run
            self._thread = None

    # On the writer thread --------------------------------------------------------------
    def _serve(self, requests: queue.SimpleQueue[_Request | None]) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while (request := requests.get()) is not None:
                try:
                    if connection is None:
                        connection = self._connect()
                    value = self._transaction(connection, request.operation)
                except BaseException as error:  # for the caller to handle, whatever it is
                    request.deliver(None, error)
                else:
                    request.deliver(value, None)
        finally:
            if connection is not None:
                connection.close()

    def _transaction(self, connection: sqlite3.Connection, operation: Operation[Any]) -> Any:
        statements = _ThreadStatements(connection)
        statements.run_sql("BEGIN IMMEDIATE")
        try:
            value = _run_to_end(operation(statements))
            statements.run_sql("COMMIT")
        except BaseException:
            if connection.in_transaction:  # a failed COMMIT may leave it open, too
                connection.rollback()
            raise
        return value


@dataclass(frozen=True, slots=True)
class _Request:
    operation: Operation[Any]
    done: asyncio.Future[Any]

    def deliver(self, value: Any, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody to tell
            self.done.get_loop().call_soon_threadsafe(_settle, self.done, value, error)


def _settle(done: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if done.cancelled():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(value)


def _run_to_end(coroutine: Awaitable[T]) -> T:
    assert isinstance(coroutine, Coroutine)
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("an operation on the SQLite writer awaited more than its statements")


class _ThreadStatements:
    """`Statements` on the writer thread's connection: each call runs there and then."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    @property
    def dialect(self) -> str:
        return "sqlite"

    async def fetch(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Sequence[RowValues]:
        prepared = _prepared(statement)
        sql, values = prepared.bound(parameters)
        cursor = self._run(sql, values)
        try:
            rows = cursor.fetchall()
            described = tuple(column[0] for column in cursor.description or ())
        finally:
            cursor.close()
        if not prepared.column_names:  # textual SQL: its columns as the database names them
            return [dict(zip(described, row, strict=True)) for row in rows]
        return [prepared.row(row) for row in rows]

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> None:
        sql, values = _prepared(statement).bound(parameters)
        self._run(sql, values).close()

    def run_sql(self, sql: str) -> None:
        self._run(sql, ()).close()

    def _run(self, sql: str, values: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self._connection.execute(sql, values)
        except sqlite3.Error as error:
            # As SQLAlchemy would raise it, so that the store's translation applies.
            raise DBAPIError.instance(sql, values, error, sqlite3.Error) from error


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A statement compiled for SQLite once, with its parameter and result conversions."""

    compiled: SQLCompiler
    column_names: tuple[str, ...]
    column_conversions: tuple[Callable[[Any], Any] | None, ...]

    def bound(self, parameters: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
        """The SQL text (IN lists expanded) and its positional values, converted."""
        expanded = self.compiled.construct_expanded_state(dict(parameters or {}))
        conversions: Mapping[str, Any] = self.compiled._bind_processors
        if expanded.processors:  # those of the expanded IN lists' values
            conversions = {**conversions, **expanded.processors}
        values = []
        for name in expanded.positiontup or ():
            value = expanded.parameters[name]
            conversion = conversions.get(name)
            values.append(value if conversion is None else conversion(value))
        return expanded.statement, values

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        if len(values) != len(self.column_names):
            raise RuntimeError("a statement returned other columns than it was compiled for")
        return {
            name: value if conversion is None else conversion(value)
            for name, conversion, value in zip(
                self.column_names, self.column_conversions, values, strict=True
            )
        }


def bound_for_sqlite(statement: Executable, parameters: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """The SQL text and positional values the writer runs for `statement` (for plans)."""
    return _prepared(statement).bound(parameters)


@cache
def _prepared(statement: Executable) -> _Prepared:
    """Statements are built once (cached), so is this."""
    assert isinstance(statement, ClauseElement)
    compiled = statement.compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)
    columns = compiled._result_columns  # what SQLAlchemy's own results are read with
    conversions = [
        column.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None) for column in columns
    ]
    return _Prepared(compiled, tuple(column.keyname for column in columns), tuple(conversions))
