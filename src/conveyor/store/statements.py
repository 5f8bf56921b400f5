"""How the store's statements reach the database.

Statements are SQLAlchemy constructs, built once and run many times. They run either on a
SQLAlchemy connection (`AlchemyStatements`: SQLite, transactions, the caller's connection)
or, for PostgreSQL's hot single-statement calls, straight on asyncpg (`direct.py`), which
skips SQLAlchemy's execution layer and pool: a third of a millisecond a call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncConnection


class RowValues(Protocol):
    """A result row read by column name: a SQLAlchemy RowMapping or an asyncpg Record."""

    def __getitem__(self, key: str, /) -> Any: ...


class Statements(Protocol):
    """Runs statements: one round trip each, in whatever transaction the runner is in."""

    @property
    def dialect(self) -> str: ...

    async def fetch(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Sequence[RowValues]:
        """The rows `statement` returns (RETURNING or SELECT)."""
        ...

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> None:
        """Run a statement that returns no rows."""
        ...


class SentStatements(Statements, Protocol):
    """`Statements` in one transaction on one connection that can also start a statement
    and return before its answer, so that the caller's work overlaps the server's."""

    async def send(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Awaitable[Sequence[RowValues]]:
        """Start `statement` now; await the result for its rows. One statement at a time:
        await each result before sending the next."""
        ...


class AlchemyStatements:
    """`Statements` on a SQLAlchemy connection, inside its transaction (if any)."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    @property
    def dialect(self) -> str:
        return self.connection.dialect.name

    async def fetch(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Sequence[RowValues]:
        result = await self.connection.execute(statement, dict(parameters or {}))
        return result.mappings().all()

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> None:
        await self.connection.execute(statement, dict(parameters or {}))
