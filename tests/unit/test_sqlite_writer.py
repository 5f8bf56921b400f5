"""The SQLite writer: each operation one transaction on its own thread, on a real file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import IntegrityError

from conveyor.store.engine import sqlite_file_connector
from conveyor.store.sqlite_writer import SqliteWriter
from conveyor.store.statements import Statements

INSERT = text("INSERT INTO items (name) VALUES (:name)")
NAMES = text("SELECT name FROM items ORDER BY name")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "writer.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE items (name TEXT PRIMARY KEY)")
    return path


@pytest.fixture
async def writer(database: Path) -> AsyncIterator[SqliteWriter]:
    connect = sqlite_file_connector(make_url(f"sqlite:///{database}"))
    assert connect is not None
    writer = SqliteWriter(connect)
    yield writer
    writer.close()


def stored(database: Path) -> list[str]:
    """What another connection sees: only what was committed."""
    with sqlite3.connect(database) as connection:
        return [name for (name,) in connection.execute("SELECT name FROM items ORDER BY name")]


async def insert(statements: Statements, *names: str) -> list[str]:
    for name in names:
        await statements.execute(INSERT, {"name": name})
    return [row["name"] for row in await statements.fetch(NAMES)]


async def test_an_operation_commits_all_its_statements_and_returns_its_value(
    writer: SqliteWriter, database: Path
) -> None:
    result = await writer.run(lambda statements: insert(statements, "a", "b"))

    assert result == ["a", "b"]
    assert stored(database) == ["a", "b"]


async def test_an_operation_that_fails_leaves_nothing_written(
    writer: SqliteWriter, database: Path
) -> None:
    async def fails(statements: Statements) -> None:
        await insert(statements, "a")
        raise ValueError("changed its mind")

    with pytest.raises(ValueError, match="changed its mind"):
        await writer.run(fails)

    assert stored(database) == []
    assert await writer.run(lambda statements: insert(statements, "b")) == ["b"]


async def test_an_operation_awaiting_more_than_its_statements_is_refused_and_undone(
    writer: SqliteWriter, database: Path
) -> None:
    async def waits(statements: Statements) -> None:
        await insert(statements, "a")
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="awaited more than its statements"):
        await writer.run(waits)

    assert stored(database) == []


async def test_database_errors_arrive_as_sqlalchemy_errors(
    writer: SqliteWriter, database: Path
) -> None:
    await writer.run(lambda statements: insert(statements, "a"))

    with pytest.raises(IntegrityError, match="UNIQUE"):
        await writer.run(lambda statements: insert(statements, "b", "a"))

    assert stored(database) == ["a"]  # "b" went with the failed transaction


async def test_a_cancelled_caller_does_not_undo_what_its_transaction_wrote(
    writer: SqliteWriter, database: Path
) -> None:
    release = threading.Event()

    async def blocks(statements: Statements) -> None:
        release.wait(timeout=10)  # on the writer thread: the next operation queues behind

    blocking = asyncio.create_task(writer.run(blocks))
    cancelled = asyncio.create_task(writer.run(lambda statements: insert(statements, "a")))
    await asyncio.sleep(0)  # both handed to the thread
    cancelled.cancel()
    release.set()

    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await blocking
    await writer.run(insert)  # everything before it is done

    assert stored(database) == ["a"]


async def test_a_closed_writer_starts_again_on_its_next_operation(
    writer: SqliteWriter, database: Path
) -> None:
    await writer.run(lambda statements: insert(statements, "a"))
    writer.close()

    assert await writer.run(lambda statements: insert(statements, "b")) == ["a", "b"]


async def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    connect = sqlite_file_connector(make_url(f"sqlite:///{tmp_path}/gone/writer.db"))
    assert connect is not None
    writer = SqliteWriter(connect)
    try:
        with pytest.raises(FileNotFoundError, match="gone"):
            await writer.run(lambda statements: insert(statements, "a"))
    finally:
        writer.close()


def test_a_database_in_memory_has_no_writer_of_its_own() -> None:
    # Another connection would see another database: such stores write through SQLAlchemy.
    assert sqlite_file_connector(make_url("sqlite:///:memory:")) is None
