"""Upgrading a store made by an earlier version: its jobs survive and work as before."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, insert, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor.core.job import JobState, NewJob
from conveyor.ports import CounterEvent
from conveyor.store.engine import create_engine
from conveyor.store.migrate import SCRIPTS, current_revision, head_revision, upgrade
from conveyor.store.schema import jobs
from conveyor.store.sql import SqlJobStore
from tests.backends import Backend, create_database, drop_database, url_for_database

FIRST_REVISION = "0001"
OLD_JOB_ID = "018f0000-0000-7000-8000-0000000000aa"


@pytest.fixture
async def empty_postgres_database(postgres_server: Backend) -> AsyncIterator[str]:
    assert postgres_server.url is not None
    name = f"conveyor_old_{secrets.token_hex(6)}"
    await create_database(postgres_server.url, name)
    try:
        yield url_for_database(postgres_server.url, name)
    finally:
        await drop_database(postgres_server.url, name)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def empty_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "empty_postgres_database"
    url: str = request.getfixturevalue(fixture)
    return url


def _alembic(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def _upgrade_to(connection: Connection, revision: str) -> None:
    command.upgrade(_alembic(connection), revision)


def _old_job(connection: Connection) -> None:
    # Written with the columns the first revision had: no fingerprint.
    now = datetime.now(UTC)
    connection.execute(
        insert(jobs).values(
            id=OLD_JOB_ID, tenant="default", task="t", queue="default", state="queued",
            priority=0, args={}, attempt=0, max_attempts=3, run_at=now, created_at=now,
            cancel_requested=False, errors=[], tags=[], idempotency_key="old",
        )
    )  # fmt: skip


async def test_a_store_from_the_first_revision_upgrades_and_keeps_its_jobs(empty_url: str) -> None:
    engine = create_engine(empty_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to, FIRST_REVISION)
            await connection.run_sync(_old_job)
    finally:
        await engine.dispose()

    await upgrade(empty_url)

    assert await current_revision(empty_url) == head_revision()
    store = await SqlJobStore.open(empty_url)
    try:
        assert (await store.get(OLD_JOB_ID)).state is JobState.QUEUED
        # The old job has no fingerprint: a repeat of its key is a replay, never a conflict.
        again = await store.enqueue(NewJob(task="t", idempotency_key="old", fingerprint="new"))
        assert (again.created, again.job.id) == (False, OLD_JOB_ID)
        await store.pause_queue("default")
        assert await store.claim(worker_id="w", queues=(), limit=1, lease_seconds=60) == []
        await store.enqueue(NewJob(task="t"))
        assert (await store.metrics()).counters == {(CounterEvent.ENQUEUED, "default"): 1}
    finally:
        await store.close()


@pytest.mark.postgres
async def test_the_jobs_table_is_vacuumed_by_its_churn_and_the_downgrade_undoes_it(
    empty_postgres_database: str,
) -> None:
    await upgrade(empty_postgres_database)
    engine = create_engine(empty_postgres_database)
    try:
        assert "autovacuum_vacuum_scale_factor=0.02" in await _jobs_table_options(engine)
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade_to, "0002")
        assert await _jobs_table_options(engine) == []
    finally:
        await engine.dispose()


async def _jobs_table_options(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        query = text("SELECT reloptions FROM pg_class WHERE relname = 'conveyor_jobs'")
        return list((await connection.execute(query)).scalar_one() or [])


def _downgrade_to(connection: Connection, revision: str) -> None:
    command.downgrade(_alembic(connection), revision)


async def test_the_unread_index_of_running_jobs_by_worker_is_dropped_and_the_downgrade_restores_it(
    empty_url: str,
) -> None:
    await upgrade(empty_url)
    engine = create_engine(empty_url)
    try:
        assert "ix_conveyor_jobs_held" not in await _jobs_indexes(engine)
        assert "ix_conveyor_jobs_leases" in await _jobs_indexes(engine)
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade_to, "0003")
        assert "ix_conveyor_jobs_held" in await _jobs_indexes(engine)
    finally:
        await engine.dispose()


async def test_the_index_of_a_tenants_jobs_by_id_is_dropped_and_the_downgrade_restores_it(
    empty_url: str,
) -> None:
    await upgrade(empty_url)
    engine = create_engine(empty_url)
    try:
        assert "ix_conveyor_jobs_listing" not in await _jobs_indexes(engine)
        assert "ix_conveyor_jobs_listing_state" in await _jobs_indexes(engine)
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade_to, "0004")
        assert "ix_conveyor_jobs_listing" in await _jobs_indexes(engine)
    finally:
        await engine.dispose()


async def _jobs_indexes(engine: AsyncEngine) -> set[str]:
    def names(connection: Connection) -> set[str]:
        return {str(index["name"]) for index in inspect(connection).get_indexes("conveyor_jobs")}

    async with engine.connect() as connection:
        return await connection.run_sync(names)
