"""Monitor leadership: exactly one monitor runs the maintenance passes at a time.

PostgreSQL: a session-level advisory lock on a connection kept for as long as we lead; if
that session dies, the server drops the lock and another monitor can take it.
SQLite: a row in `conveyor_leaders` that expires unless its holder renews it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from conveyor.store.schema import db_now, db_now_plus, leaders

MONITOR = "monitor"

# The bytes of "conveyor" as a positive 64-bit integer: an arbitrary but recognisable key.
ADVISORY_LOCK_KEY = int.from_bytes(b"conveyor", "big")


class Leadership(Protocol):
    async def try_lead(self, *, holder: str, ttl_seconds: float) -> bool: ...

    async def resign(self, *, holder: str) -> None: ...

    async def close(self) -> None: ...


def leadership_for(engine: AsyncEngine) -> Leadership:
    if engine.dialect.name == "postgresql":
        return AdvisoryLockLeadership(engine)
    return LeaseRowLeadership(engine)


class AdvisoryLockLeadership:
    """Leads while a dedicated session holds the advisory lock; `ttl_seconds` is not needed."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._holder: str | None = None
        self._guard = asyncio.Lock()

    async def try_lead(self, *, holder: str, ttl_seconds: float) -> bool:
        async with self._guard:
            if self._connection is not None:
                if holder != self._holder:
                    return False
                if await self._session_alive(self._connection):
                    return True
                await self._discard()
            return await self._acquire(holder)

    async def resign(self, *, holder: str) -> None:
        async with self._guard:
            if self._connection is None or holder != self._holder:
                return
            with contextlib.suppress(Exception):
                await self._connection.execute(select(func.pg_advisory_unlock(ADVISORY_LOCK_KEY)))
                await self._connection.commit()
            await self._discard()

    async def close(self) -> None:
        async with self._guard:
            await self._discard()

    async def _acquire(self, holder: str) -> bool:
        connection = await self._engine.connect()
        try:
            query = select(func.pg_try_advisory_lock(ADVISORY_LOCK_KEY))
            locked = bool((await connection.execute(query)).scalar())
            await connection.commit()  # the lock outlives the transaction; idle, not in one
        except BaseException:
            await _throw_away(connection)
            raise
        if not locked:
            await connection.close()
            return False
        self._connection, self._holder = connection, holder
        return True

    @staticmethod
    async def _session_alive(connection: AsyncConnection) -> bool:
        # Our lock lives exactly as long as the session: a live session still holds it.
        try:
            await connection.execute(select(1))
            await connection.commit()
        except Exception:
            return False
        return True

    async def _discard(self) -> None:
        connection, self._connection, self._holder = self._connection, None, None
        if connection is not None:
            await _throw_away(connection)


async def _throw_away(connection: AsyncConnection) -> None:
    # Never hand a session that may hold the lock back to the pool: close it for real.
    with contextlib.suppress(Exception):
        await connection.invalidate()
    with contextlib.suppress(Exception):
        await connection.close()


class LeaseRowLeadership:
    """Leads while our row in conveyor_leaders has not expired; renewing extends it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def try_lead(self, *, holder: str, ttl_seconds: float) -> bool:
        claim = sqlite.insert(leaders).values(
            name=MONITOR, holder=holder, expires_at=db_now_plus(ttl_seconds)
        )
        # Take the row when it is ours already or its holder let it expire; else leave it.
        statement = claim.on_conflict_do_update(
            index_elements=[leaders.c.name],
            set_={"holder": claim.excluded.holder, "expires_at": claim.excluded.expires_at},
            where=or_(leaders.c.holder == claim.excluded.holder, leaders.c.expires_at < db_now()),
        ).returning(leaders.c.holder)
        async with self._engine.begin() as connection:
            return (await connection.execute(statement)).first() is not None

    async def resign(self, *, holder: str) -> None:
        statement = delete(leaders).where(leaders.c.name == MONITOR, leaders.c.holder == holder)
        async with self._engine.begin() as connection:
            await connection.execute(statement)

    async def close(self) -> None:
        """Nothing is held open: an unrenewed row simply expires."""
