"""Opening the store: migrations, schema checks, and clear StoreUnavailable errors when the
database cannot be reached (the worker backs off on those instead of crashing)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from conveyor.core.errors import ConfigError, StoreUnavailable
from conveyor.core.job import NewJob
from conveyor.core.outcome import Completed
from conveyor.ports import JobStore, Settlement
from conveyor.store.migrate import current_revision, head_revision, upgrade
from conveyor.store.schema import metadata
from conveyor.store.sql import SqlJobStore
from tests.backends import Backend, create_database, drop_database, url_for_database
from tests.waiting import eventually

UNREACHABLE_POSTGRES = "postgresql://postgres@127.0.0.1:1/nowhere"


# unreachable databases ------------------------------------------------------------------


async def test_opening_an_unreachable_postgres_server_raises_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable) as raised:
        await SqlJobStore.open(UNREACHABLE_POSTGRES)

    message = str(raised.value)
    assert "127.0.0.1:1" in message
    assert "\n" not in message


async def test_opening_sqlite_in_a_missing_folder_raises_store_unavailable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "missing" / "conveyor.db"

    with pytest.raises(StoreUnavailable) as raised:
        await SqlJobStore.open(f"sqlite:///{path}")

    assert str(path) in str(raised.value)


async def test_migration_commands_on_an_unreachable_server_raise_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        await upgrade(UNREACHABLE_POSTGRES)
    with pytest.raises(StoreUnavailable):
        await current_revision(UNREACHABLE_POSTGRES)


async def test_an_unsupported_database_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"sqlite:///path or postgresql://"):
        await SqlJobStore.open("mysql://root@localhost/jobs")


async def test_ping_answers_when_the_store_is_reachable(store: SqlJobStore) -> None:
    # Typed as the port: mypy checks here that SqlJobStore implements all of JobStore.
    port: JobStore = store
    await port.ping()


@pytest.fixture
async def doomed_database(postgres_server: Backend, postgres_template: str) -> AsyncIterator[str]:
    """A migrated database the test may drop (the server URL stays reachable)."""
    assert postgres_server.url is not None
    name = f"conveyor_doomed_{secrets.token_hex(6)}"
    await create_database(postgres_server.url, name, template=postgres_template)
    try:
        yield name
    finally:
        await drop_database(postgres_server.url, name)


@pytest.mark.postgres
async def test_every_operation_raises_store_unavailable_once_the_database_is_gone(
    postgres_server: Backend, doomed_database: str
) -> None:
    assert postgres_server.url is not None
    store = await SqlJobStore.open(url_for_database(postgres_server.url, doomed_database))
    try:
        await store.ping()
        await drop_database(postgres_server.url, doomed_database)
        operations: list[Any] = [
            store.ping(),
            store.enqueue(NewJob(task="t")),
            store.claim(worker_id="w", queues=(), limit=1, lease_seconds=30),
            store.renew(worker_id="w", job_ids=["j"], lease_seconds=30),
            store.list_workers(),
            store.try_lead(holder="m", ttl_seconds=30),
        ]
        for operation in operations:
            with pytest.raises(StoreUnavailable, match=doomed_database):
                await operation
    finally:
        await store.close()


@pytest.mark.postgres
async def test_the_store_reconnects_after_its_connections_are_killed(postgres_url: str) -> None:
    store = await SqlJobStore.open(postgres_url)
    killer = await SqlJobStore.open(postgres_url)
    try:
        job = (await store.enqueue(NewJob(task="t"))).job
        others = (
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        async with killer.engine.begin() as connection:
            await connection.execute(text(f"SELECT pg_terminate_backend(pid) {others}"))

        async def all_gone() -> bool:
            async with killer.engine.connect() as connection:
                return (await connection.execute(text(f"SELECT count(*) {others}"))).scalar() == 0

        await eventually(all_gone, timeout=10)  # the kill signals; backends end a moment later
        # Every path reconnects: SQLAlchemy's pool, and asyncpg's for the hot statements.
        assert (await store.get(job.id)).id == job.id
        again = (await store.enqueue(NewJob(task="t"))).job
        claimed = await store.claim(worker_id="w", queues=(), limit=2, lease_seconds=30)
        settled = await store.settle([Settlement(c.job.id, c.token, Completed(1)) for c in claimed])
        assert settled == {job.id, again.id}
    finally:
        await store.close()
        await killer.close()


# migrations -----------------------------------------------------------------------------


async def test_an_opened_store_is_at_the_head_revision(database_url: str) -> None:
    store = await SqlJobStore.open(database_url)
    await store.close()

    assert await current_revision(database_url) == head_revision()
    await upgrade(database_url)  # already there: nothing to do
    assert await current_revision(database_url) == head_revision()


async def test_a_new_sqlite_file_migrates_itself_even_when_opened_concurrently(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"

    stores = await asyncio.gather(*(SqlJobStore.open(url) for _ in range(4)))
    try:
        await asyncio.gather(*(store.enqueue(NewJob(task="t")) for store in stores))
        assert sum((await stores[0].counts()).by_state.values()) == 4
    finally:
        for store in stores:
            await store.close()
    assert await current_revision(url) == head_revision()


@pytest.fixture
async def empty_postgres_url(postgres_server: Backend) -> AsyncIterator[str]:
    assert postgres_server.url is not None
    name = f"conveyor_empty_{secrets.token_hex(6)}"
    await create_database(postgres_server.url, name)
    try:
        yield url_for_database(postgres_server.url, name)
    finally:
        await drop_database(postgres_server.url, name)


@pytest.mark.postgres
async def test_an_unmigrated_postgres_database_asks_for_conveyor_db_upgrade(
    empty_postgres_url: str,
) -> None:
    with pytest.raises(ConfigError, match="conveyor db upgrade"):
        await SqlJobStore.open(empty_postgres_url)
    assert await current_revision(empty_postgres_url) is None

    await upgrade(empty_postgres_url)

    store = await SqlJobStore.open(empty_postgres_url)
    await store.close()
    assert await current_revision(empty_postgres_url) == head_revision()


# Their `priority DESC` is reflected by SQLite as a plain column.
DESCENDING_INDEXES = {
    "ix_conveyor_jobs_ready": "(queue, priority DESC, run_at, id)",
    "ix_conveyor_jobs_ready_all_queues": "(priority DESC, run_at, id)",
}


def _schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    differences: list[Any] = compare_metadata(context, metadata)
    if connection.dialect.name == "sqlite":
        # Alembic would report the descending indexes as changed; their definitions are
        # checked against sqlite_master instead.
        differences = [d for d in differences if d[1].name not in DESCENDING_INDEXES]
    return differences


def _index_names(connection: Connection) -> set[str]:
    inspector = inspect(connection)
    return {index["name"] or "" for index in inspector.get_indexes("conveyor_jobs")}


async def test_migrations_create_the_schema_the_store_is_written_against(
    store: SqlJobStore,
) -> None:
    async with store.engine.connect() as connection:
        differences = await connection.run_sync(_schema_differences)
        indexes = await connection.run_sync(_index_names)

    assert differences == []
    expected = {index.name for index in metadata.tables["conveyor_jobs"].indexes}
    assert indexes == expected


@pytest.mark.parametrize("index", sorted(DESCENDING_INDEXES))
async def test_the_sqlite_ready_indexes_order_by_priority_descending(
    sqlite_url: str, index: str
) -> None:
    store = await SqlJobStore.open(sqlite_url)
    try:
        async with store.engine.connect() as connection:
            query = text("SELECT sql FROM sqlite_master WHERE name = :index")
            definition = (await connection.execute(query, {"index": index})).scalar_one()
    finally:
        await store.close()

    assert f"ON conveyor_jobs {DESCENDING_INDEXES[index]}" in definition
    assert "WHERE state = 'queued'" in definition
