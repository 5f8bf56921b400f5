"""Engines for the job store, and the translation of connection failures.

SQLite gets its pragmas on every pooled connection and takes the write lock up front
(`BEGIN IMMEDIATE`); PostgreSQL checks each pooled connection as it is handed out, so that
the pool survives a restart.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import await_only

from conveyor.core.errors import ConfigError, StoreUnavailable

READ_ONLY = "conveyor_read_only"
"""Execution option: the transaction only reads, so SQLite may begin it deferred."""

# Long enough to ride out a burst of writers; a lock held longer than this is a real outage.
SQLITE_BUSY_TIMEOUT_MS = 10_000
POSTGRES_POOL_SIZE = 10
POSTGRES_MAX_OVERFLOW = 10
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10.0

_SQLITE_PRAGMAS = (
    f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)


# A float that orjson writes with a positive exponent, or a string (matched only to be
# skipped, so that text inside strings is never touched).
_EXPONENT_FLOAT_OR_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"|-?\d+(?:\.\d+)?e\+\d+')


def dump_json(value: Any) -> str:
    """JSON text for `value` that reads back as an equal value of the same types everywhere."""
    text = orjson.dumps(value)
    if b"e+" in text:
        text = _EXPONENT_FLOAT_OR_STRING.sub(_spelled_out, text)
    return text.decode()


def _spelled_out(match: re.Match[bytes]) -> bytes:
    # orjson writes floats from 1e16 up as "1e+16". jsonb keeps a number's digits but not
    # its notation and prints it as 10000000000000000, which reads back as an int; written
    # out with ".0" it stays a float. (Exact: floats that large are whole numbers.)
    token = match.group()
    if token.startswith(b'"'):
        return token
    return format(Decimal(token.decode()), "f").encode() + b".0"


def load_json(value: str | bytes) -> Any:
    return orjson.loads(value)


def normalize_url(url: str) -> URL:
    """Map the user-facing URL forms onto the async drivers Conveyor ships with."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"invalid database URL {url!r}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+asyncpg")
    raise ConfigError(
        f"unsupported database URL {url!r}: use sqlite:///path or postgresql://user@host/db"
    )


def create_engine(url: str) -> AsyncEngine:
    """An engine for a job-store URL: sqlite:///path or postgresql://…"""
    target = normalize_url(url)
    if target.get_backend_name() == "sqlite":
        return _sqlite_engine(target)
    return _postgres_engine(target)


def _sqlite_engine(url: URL) -> AsyncEngine:
    engine = create_async_engine(url, json_serializer=dump_json, json_deserializer=load_json)
    folder = _sqlite_folder(url)
    if folder is not None:
        event.listen(engine.sync_engine, "do_connect", partial(_require_folder, folder))
    event.listen(engine.sync_engine, "connect", _prepare_sqlite_connection)
    event.listen(engine.sync_engine, "begin", _begin_sqlite_transaction)
    return engine


def sqlite_file_connector(url: URL) -> Callable[[], sqlite3.Connection] | None:
    """Opens plain sqlite3 connections to the file at `url`, prepared as the engine's are;
    None when the database is not a file others can open (memory, URI names)."""
    folder = _sqlite_folder(url)
    if folder is None:
        return None
    path = str(url.database)

    def connect() -> sqlite3.Connection:
        _require_folder(folder)
        connection = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            _prepare_sqlite_connection(connection, None)
        except BaseException:
            connection.close()
            raise
        return connection

    return connect


def _sqlite_folder(url: URL) -> Path | None:
    if not url.database or url.database == ":memory:" or url.query.get("uri"):
        return None
    return Path(url.database).absolute().parent


def _require_folder(folder: Path, *arguments: Any) -> None:
    # SQLite would say only "unable to open database file"; name the real problem. (It also
    # spares aiosqlite a failed connect, whose cleanup can outlive the event loop.)
    if not folder.is_dir():
        raise FileNotFoundError(f"the folder {folder} does not exist")


def _prepare_sqlite_connection(dbapi_connection: Any, connection_record: Any) -> None:
    # Pragmas are per connection, so every pooled connection needs them again.
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        _use_write_ahead_log(cursor)
    finally:
        cursor.close()
    # The driver would BEGIN lazily (deferred) before writes; we emit BEGIN ourselves.
    dbapi_connection.isolation_level = None


def _use_write_ahead_log(cursor: Any) -> None:
    # WAL lets readers work beside the one writer. The mode is stored in the file, so once
    # one connection has switched it, the others find it on. Switching needs an exclusive
    # lock that SQLite refuses at once (no busy wait) while another process holds a lock,
    # as happens when several processes open a new file together: leave the switch to
    # whoever holds the lock; every new connection tries again.
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() == "wal":
        return
    with contextlib.suppress(sqlite3.OperationalError):
        cursor.execute("PRAGMA journal_mode = WAL")


def _begin_sqlite_transaction(connection: Connection) -> None:
    # A deferred transaction that reads and then writes fails with SQLITE_BUSY at once
    # when another writer got there first; IMMEDIATE waits for the lock (busy_timeout).
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _postgres_engine(url: URL) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=POSTGRES_POOL_SIZE,
        max_overflow=POSTGRES_MAX_OVERFLOW,
        connect_args={"timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS},
        json_serializer=dump_json,
        json_deserializer=load_json,
    )
    _ping_on_checkout(engine)
    return engine


def _ping_on_checkout(engine: AsyncEngine) -> None:
    """Hand out no pooled connection that is dead: one round trip per checkout.

    SQLAlchemy's pool_pre_ping does this with asyncpg's ping, which is BEGIN, `;`, ROLLBACK:
    three round trips added to every store call, more than a submission itself costs. A
    connection whose socket the server already closed (a restart, a terminated backend) is
    known closed to asyncpg at no cost; any other is asked `SELECT 1`.
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _check(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        driver = dbapi_connection.driver_connection
        if driver.is_closed():
            raise DisconnectionError("the server closed this pooled connection")
        try:
            await_only(driver.execute("SELECT 1"))
        except Exception as error:  # the pool replaces it with a new connection
            raise DisconnectionError(f"a pooled connection is dead: {error}") from error


def asyncpg_connect_options(url: URL) -> dict[str, Any]:
    """asyncpg.connect's arguments for a PostgreSQL URL (its user, password, host and ssl)."""
    options: dict[str, Any] = url.translate_connect_args(username="user")
    ssl = url.query.get("ssl") or url.query.get("sslmode")
    if isinstance(ssl, str):
        options["ssl"] = ssl
    return options


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool, for transactions that only read."""
    return engine.execution_options(**{READ_ONLY: True})


def describe_database(url: URL) -> str:
    """Where the store lives, for messages: never the password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database or ':memory:'}"
    host = url.host or "localhost"
    port = url.port or 5432
    return f"PostgreSQL at {host}:{port}/{url.database or ''}"


class ConnectFailed(Exception):
    """No connection to the database could be made (its cause says why)."""


def is_unavailable(error: BaseException) -> bool:
    """True when `error` means the database cannot be reached, not that a query was wrong."""
    # A pool that hands out no connection for its whole timeout is as good as down.
    if isinstance(error, OSError | OperationalError | InterfaceError | PoolTimeout | ConnectFailed):
        return True
    if isinstance(error, DBAPIError):
        # No statement: it failed while connecting, committing or rolling back.
        return error.connection_invalidated or error.statement is None
    return _is_asyncpg_connection_error(error)


def _is_asyncpg_connection_error(error: BaseException) -> bool:
    try:
        import asyncpg
    except ImportError:  # asyncpg is optional: SQLite-only installations lack it
        return False
    connection_errors = (
        asyncpg.exceptions.PostgresConnectionError,
        asyncpg.exceptions.ConnectionDoesNotExistError,
        # Class 57: the server is shutting down, or terminated this backend.
        asyncpg.exceptions.OperatorInterventionError,
        # A connection left unusable by such an end, before asyncpg noticed it closed.
        asyncpg.exceptions.InternalClientError,
    )
    return isinstance(error, connection_errors)


def unavailable(error: BaseException, url: URL) -> StoreUnavailable:
    """A one-line StoreUnavailable naming the database and the cause."""
    cause = _cause_of(error)
    return StoreUnavailable(f"job store unavailable ({describe_database(url)}): {cause}")


def _cause_of(error: BaseException) -> str:
    original = error.orig if isinstance(error, DBAPIError) and error.orig else error
    # Async drivers are wrapped in DB-API adapters; the driver's own error names the cause.
    original = original.__cause__ or original
    text = " ".join(str(original).split()) or type(original).__name__
    return f"{type(original).__name__}: {text}"
