"""The direct path's connection pool, on a real PostgreSQL: it never opens more than its
size, hands every released connection on, replaces dead ones, never reuses one whose
statement was cut short, and closes cleanly; and transactions on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import Executable, text
from sqlalchemy.engine import make_url

from conveyor.store.direct import DirectConnections
from conveyor.store.direct_pool import DirectPool, PoolClosed
from conveyor.store.engine import asyncpg_connect_options
from tests.waiting import eventually

pytestmark = pytest.mark.postgres

LOCK = 4242  # an advisory lock the tests hold to keep statements running


async def _nothing_to_prepare(connection: asyncpg.Connection) -> None:
    pass


@pytest.fixture
async def options(postgres_url: str) -> dict[str, object]:
    return asyncpg_connect_options(make_url(postgres_url))


@pytest.fixture
async def pool(options: dict[str, object]) -> AsyncIterator[DirectPool]:
    pool = DirectPool(options, size=2, prepare=_nothing_to_prepare)
    yield pool
    if not pool.closed:
        await asyncio.wait_for(pool.close(), timeout=10)


@pytest.fixture
async def holder(options: dict[str, object]) -> AsyncIterator[asyncpg.Connection]:
    """A session of its own, holding LOCK until the test lets go."""
    connection = await asyncpg.connect(**options)
    await connection.execute("SELECT pg_advisory_lock($1)", LOCK)
    yield connection
    await connection.close()


async def run(pool: DirectPool, sql: str, *arguments: object) -> object:
    connection = await pool.acquire()
    reusable = False
    try:
        value = await connection.fetchval(sql, *arguments)
        reusable = True
        return value
    finally:
        pool.release(connection, reusable=reusable)


async def backends(holder: asyncpg.Connection) -> int:
    """Sessions of the pool's database other than the holder's."""
    count = await holder.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )
    assert isinstance(count, int)
    return count


async def blocked_statements(
    pool: DirectPool, holder: asyncpg.Connection, count: int
) -> list[asyncio.Task[object]]:
    """`count` statements waiting for LOCK: the pool runs as many as it has room for (they
    wait at the server), and the others wait for a connection."""
    statements = [
        asyncio.create_task(run(pool, "SELECT pg_advisory_lock_shared($1)::text", LOCK))
        for _ in range(count)
    ]
    running = min(count, pool.size)
    await eventually(
        lambda: waiting_for_the_lock(holder, running), timeout=10, message="blocked statements"
    )
    return statements


async def waiting_for_the_lock(holder: asyncpg.Connection, count: int) -> bool:
    waiting = await holder.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    )
    return bool(waiting == count)


async def test_it_never_opens_more_connections_than_its_size(
    pool: DirectPool, holder: asyncpg.Connection
) -> None:
    blocked = await blocked_statements(pool, holder, 5)

    assert pool.connections() == 2
    assert await backends(holder) == 2
    await holder.execute("SELECT pg_advisory_unlock($1)", LOCK)
    # The three callers that waited for a connection get the released ones, in turn.
    assert await asyncio.wait_for(asyncio.gather(*blocked), timeout=10) == [""] * 5
    assert pool.connections() == 2


async def test_a_caller_cancelled_while_waiting_leaves_the_pool_whole(
    pool: DirectPool, holder: asyncpg.Connection
) -> None:
    blocked = await blocked_statements(pool, holder, 2)
    waiting = asyncio.create_task(pool.acquire())
    await eventually(lambda: _waiters_are(pool, 1), timeout=10, message="a caller waiting")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    await holder.execute("SELECT pg_advisory_unlock($1)", LOCK)
    await asyncio.wait_for(asyncio.gather(*blocked), timeout=10)
    results = await asyncio.gather(*(run(pool, "SELECT 1") for _ in range(4)))
    assert results == [1] * 4
    assert pool.connections() == 2


async def test_a_connection_cut_short_is_closed_not_handed_out_again(
    pool: DirectPool, holder: asyncpg.Connection
) -> None:
    [cut_short] = await blocked_statements(pool, holder, 1)
    cut_short.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cut_short

    assert pool.connections() == 0
    # The next statements run at once on a new connection, not behind the cancelled one.
    assert await asyncio.wait_for(run(pool, "SELECT 2"), timeout=10) == 2
    assert await run(pool, "SELECT 3") == 3
    assert pool.connections() == 1


async def test_a_connection_the_server_closed_is_replaced(
    pool: DirectPool, holder: asyncpg.Connection
) -> None:
    connection = await pool.acquire()
    first = await connection.fetchval("SELECT pg_backend_pid()")
    pool.release(connection)
    await holder.execute("SELECT pg_terminate_backend($1)", first)
    await eventually(lambda: _is_closed(connection), timeout=10, message="the close noticed")

    second = await run(pool, "SELECT pg_backend_pid()")

    assert second != first
    assert pool.connections() == 1


async def _is_closed(connection: asyncpg.Connection) -> bool:
    return bool(connection.is_closed())


async def _waiters_are(pool: DirectPool, count: int) -> bool:
    return pool.waiting() == count


async def test_expired_connections_are_closed_idle_at_once_busy_on_release(
    pool: DirectPool, holder: asyncpg.Connection
) -> None:
    idle_pid = await run(pool, "SELECT pg_backend_pid()")
    busy = await pool.acquire()
    other = await pool.acquire()
    pool.release(other)  # idle now; `busy` stays checked out

    pool.expire_connections()
    assert pool.connections() == 1
    pool.release(busy)
    assert pool.connections() == 0
    assert await run(pool, "SELECT pg_backend_pid()") != idle_pid
    await eventually(lambda: _backends_are(holder, 1), timeout=10, message="one backend left")


async def _is_closing(pool: DirectPool) -> bool:
    return pool.closed


async def _backends_are(holder: asyncpg.Connection, count: int) -> bool:
    return await backends(holder) == count


async def test_close_waits_for_busy_connections_then_closes_them_all(
    pool: DirectPool, holder: asyncpg.Connection
) -> None:
    await asyncio.gather(run(pool, "SELECT 1"), run(pool, "SELECT 1"))
    busy = await pool.acquire()
    closing = asyncio.create_task(pool.close())
    await eventually(lambda: _is_closing(pool), timeout=10, message="the close begun")

    assert not closing.done()
    with pytest.raises(PoolClosed):
        await pool.acquire()
    assert await busy.fetchval("SELECT 5") == 5  # a statement in flight may finish
    pool.release(busy)
    await asyncio.wait_for(closing, timeout=10)
    assert pool.connections() == 0
    await eventually(lambda: _backends_are(holder, 0), timeout=10, message="all closed")


async def test_callers_waiting_when_the_pool_closes_are_told_so(
    pool: DirectPool, holder: asyncpg.Connection
) -> None:
    both = [await pool.acquire(), await pool.acquire()]
    waiting = asyncio.create_task(pool.acquire())
    await eventually(lambda: _waiters_are(pool, 1), timeout=10, message="a caller waiting")
    closing = asyncio.create_task(pool.close())

    with pytest.raises(PoolClosed):
        await asyncio.wait_for(waiting, timeout=10)
    for connection in both:
        pool.release(connection)
    await asyncio.wait_for(closing, timeout=10)


async def test_terminate_closes_busy_connections_and_counts_each_once(
    pool: DirectPool, holder: asyncpg.Connection
) -> None:
    busy = await pool.acquire()
    await run(pool, "SELECT 1")

    pool.terminate()
    assert pool.connections() == 0
    pool.release(busy)  # its statement's caller gives it back late

    assert busy.is_closed()
    assert pool.connections() == 0
    with pytest.raises(PoolClosed):
        await pool.acquire()


async def test_a_failed_connection_attempt_frees_its_place(options: dict[str, object]) -> None:
    pool = DirectPool({**options, "port": 1}, size=1, prepare=_nothing_to_prepare)
    for _ in range(2):  # the second attempt finds the place free again: it fails the same way
        with pytest.raises(ConnectionRefusedError):
            await pool.acquire()
    assert pool.connections() == 0
    await pool.close()


def test_a_pool_without_room_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one connection"):
        DirectPool({}, size=0, prepare=_nothing_to_prepare)


# Transactions on the pool (DirectConnections.transaction) ----------------------------------


@pytest.fixture
async def connections(postgres_url: str) -> AsyncIterator[DirectConnections]:
    connections = DirectConnections(make_url(postgres_url), size=2, connect_timeout=10)
    yield connections
    await connections.close()


def marker(value: int) -> Executable:
    return text("SELECT pg_advisory_xact_lock(:value) IS NULL AS answered").bindparams(value=value)


async def xact_locks(holder: asyncpg.Connection) -> int:
    count: int = await holder.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
    )
    return count


async def test_a_transaction_commits_its_statements_at_the_end_of_the_block(
    connections: DirectConnections, holder: asyncpg.Connection
) -> None:
    async with connections.transaction() as transaction:
        sent = await transaction.send(marker(1))
        assert [row["answered"] for row in await sent] == [False]
        await transaction.execute(marker(2))
        assert await xact_locks(holder) == 2  # held until the commit
    assert await xact_locks(holder) == 0
    assert connections.pool().connections() == 1  # given back, and reused next time
    async with connections.transaction() as transaction:
        await transaction.execute(marker(3))
    assert connections.pool().connections() == 1


async def send_twice(connections: DirectConnections) -> None:
    async with connections.transaction() as transaction:
        await transaction.send(marker(1))
        await transaction.send(marker(2))


async def send_and_never_await(connections: DirectConnections) -> None:
    async with connections.transaction() as transaction:
        await transaction.send(text("SELECT pg_sleep(0.05)"))


async def test_one_statement_at_a_time_and_each_awaited_before_the_commit(
    connections: DirectConnections, holder: asyncpg.Connection
) -> None:
    with pytest.raises(RuntimeError, match="still running"):
        await send_twice(connections)
    with pytest.raises(RuntimeError, match="never awaited"):
        await send_and_never_await(connections)
    assert await xact_locks(holder) == 0  # both rolled back
    async with connections.transaction() as transaction:
        await transaction.execute(marker(3))
    assert connections.pool().connections() == 1  # the one connection, used all along
