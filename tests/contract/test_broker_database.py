"""The database broker wakes idle workers when jobs become ready, and hands out claims.

A broker in these tests polls only once a minute, so a wait that ends within DEADLINE was
ended by a wake-up. Jobs are enqueued through a second store (its own connections, as
another process would be) unless a test is about this process's own announcements.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection

import asyncpg
import pytest
from sqlalchemy import text

from conveyor.brokers.database import LISTENER_APPLICATION_NAME, DatabaseBroker
from conveyor.core.job import JobState, NewJob
from conveyor.ports import Broker, ready_jobs
from conveyor.store.sql import SqlJobStore
from tests.backends import Backend
from tests.waiting import eventually

DEADLINE = 10.0
"""Seconds: generous for a loaded CI machine, while a wake-up normally takes milliseconds."""

POLL_INTERVAL = 60.0
"""So long that no wait in these tests ends by polling before DEADLINE."""


@pytest.fixture
async def broker(store: SqlJobStore) -> AsyncIterator[Broker]:
    """A started broker, seen through the `Broker` protocol (which mypy checks it meets)."""
    started = DatabaseBroker(store, poll_interval=POLL_INTERVAL)
    await started.start()
    yield started
    await started.close()


@pytest.fixture
async def other_store(database_url: str, store: SqlJobStore) -> AsyncIterator[SqlJobStore]:
    """The same database through other connections (opened after `store` migrated it)."""
    opened = await SqlJobStore.open(database_url)
    yield opened
    await opened.close()


async def start_waiting(broker: Broker, queues: Collection[str]) -> asyncio.Task[None]:
    waiter = asyncio.create_task(broker.wait_for_work(queues, POLL_INTERVAL))
    # One turn of the loop runs the task up to its first await: it is registered from then on.
    await asyncio.sleep(0)
    assert not waiter.done()
    return waiter


async def enqueue(store: SqlJobStore, queue: str) -> str:
    enqueued = await store.enqueue(NewJob(task="tests.noop", queue=queue))
    return enqueued.job.id


# Both backends -------------------------------------------------------------------------


async def test_a_waiter_wakes_when_another_connection_enqueues_in_its_queue(
    broker: Broker, other_store: SqlJobStore
) -> None:
    waiter = await start_waiting(broker, ["emails"])

    await enqueue(other_store, "emails")

    await asyncio.wait_for(waiter, DEADLINE)


async def test_a_waiter_on_every_queue_wakes_for_a_job_in_any_queue(
    broker: Broker, other_store: SqlJobStore
) -> None:
    waiter = await start_waiting(broker, [])

    await enqueue(other_store, "reports")

    await asyncio.wait_for(waiter, DEADLINE)


async def test_a_job_wakes_only_the_waiters_of_its_own_queue(
    broker: Broker, other_store: SqlJobStore
) -> None:
    waiter_on_a = await start_waiting(broker, ["a"])
    waiter_on_b = await start_waiting(broker, ["b"])

    await enqueue(other_store, "b")
    await asyncio.wait_for(waiter_on_b, DEADLINE)
    # A second wake-up on "b" comes from a later notification or check, so by the time it
    # arrives, anything the first job could have woken has been woken.
    second_waiter_on_b = await start_waiting(broker, ["b"])
    await enqueue(other_store, "b")
    await asyncio.wait_for(second_waiter_on_b, DEADLINE)

    assert not waiter_on_a.done()
    await enqueue(other_store, "a")
    await asyncio.wait_for(waiter_on_a, DEADLINE)


async def test_announce_wakes_waiters_in_this_process_without_the_database(
    store: SqlJobStore,
) -> None:
    # Never started: no LISTEN connection and no watcher, only the announcement.
    broker = DatabaseBroker(store, poll_interval=POLL_INTERVAL)
    waiter = await start_waiting(broker, ["a"])
    enqueued = await store.enqueue(NewJob(task="tests.noop", queue="a"))

    await broker.announce(ready_jobs([enqueued.job]))

    await asyncio.wait_for(waiter, DEADLINE)
    await broker.close()


async def test_announcing_a_scheduled_job_wakes_nobody(store: SqlJobStore) -> None:
    broker = DatabaseBroker(store, poll_interval=POLL_INTERVAL)
    waiter = await start_waiting(broker, ["a"])
    later = await store.enqueue(NewJob(task="tests.noop", queue="a", delay=3600))

    await broker.announce(ready_jobs([later.job]))
    await asyncio.sleep(0)  # one turn of the loop, in which a woken waiter would finish

    assert later.job.state is JobState.SCHEDULED
    assert not waiter.done()
    waiter.cancel()
    await broker.close()


async def test_a_wait_without_work_ends_after_its_timeout(broker: Broker) -> None:
    await asyncio.wait_for(broker.wait_for_work(["idle"], timeout=0.05), DEADLINE)


async def test_claim_through_the_broker_takes_the_ready_job(
    broker: Broker, store: SqlJobStore
) -> None:
    job_id = await enqueue(store, "a")

    claims = await broker.claim(worker_id="worker-1", queues=["a"], limit=10, lease_seconds=30)

    assert [claim.job.id for claim in claims] == [job_id]
    assert claims[0].job.state is JobState.RUNNING
    assert await broker.claim(worker_id="worker-2", queues=["a"], limit=10, lease_seconds=30) == []


async def test_close_is_idempotent(broker: Broker) -> None:
    await broker.close()
    await broker.close()


# PostgreSQL: the LISTEN connection -------------------------------------------------------


async def listener_pids(store: SqlJobStore) -> set[int]:
    query = text(
        "SELECT pid FROM pg_stat_activity "
        "WHERE application_name = :name AND datname = current_database()"
    )
    async with store.engine.connect() as connection:
        result = await connection.execute(query, {"name": LISTENER_APPLICATION_NAME})
        return {row[0] for row in result}


async def terminate(store: SqlJobStore, pids: Collection[int]) -> None:
    async with store.engine.connect() as connection:
        for pid in pids:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


@pytest.fixture
async def postgres_store(postgres_url: str) -> AsyncIterator[SqlJobStore]:
    opened = await SqlJobStore.open(postgres_url)
    yield opened
    await opened.close()


@pytest.mark.postgres
async def test_the_broker_listens_once_started_and_stops_when_closed(
    postgres_store: SqlJobStore,
) -> None:
    broker = DatabaseBroker(postgres_store, poll_interval=POLL_INTERVAL)
    await broker.start()
    assert (broker.listening, len(await listener_pids(postgres_store))) == (True, 1)

    await broker.close()

    assert not broker.listening

    async def listener_gone() -> bool:
        return not await listener_pids(postgres_store)

    await eventually(listener_gone, timeout=DEADLINE, message="the LISTEN connection to close")


@pytest.mark.postgres
async def test_the_listener_reconnects_after_its_connection_is_killed(
    postgres_store: SqlJobStore,
) -> None:
    broker = DatabaseBroker(postgres_store, poll_interval=POLL_INTERVAL)
    await broker.start()
    killed = await listener_pids(postgres_store)
    assert len(killed) == 1

    await terminate(postgres_store, killed)

    async def listening_again() -> bool:
        pids = await listener_pids(postgres_store)
        return broker.listening and bool(pids) and not pids & killed

    await eventually(listening_again, timeout=DEADLINE, message="the broker to listen again")
    waiter = await start_waiting(broker, ["a"])
    await enqueue(postgres_store, "a")
    await asyncio.wait_for(waiter, DEADLINE)
    await broker.close()


async def allow_connections(server: Backend, database: str | None, allowed: bool) -> None:
    """Let no new connection in (or again): PostgreSQL refuses this from inside `database`."""
    connection = await asyncpg.connect(server.require_url())
    try:
        setting = "true" if allowed else "false"
        await connection.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {setting}')
    finally:
        await connection.close()


@pytest.mark.postgres
async def test_an_outage_is_logged_once_however_many_reconnections_fail(
    postgres_store: SqlJobStore, postgres_server: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="conveyor.brokers.database")
    database = postgres_store.engine.url.database
    broker = DatabaseBroker(postgres_store, poll_interval=POLL_INTERVAL)
    await broker.start()
    await allow_connections(postgres_server, database, False)
    await terminate(postgres_store, await listener_pids(postgres_store))

    async def several_attempts_failed() -> bool:
        failures = [record for record in caplog.records if "still" in record.getMessage()]
        return len(failures) >= 3

    await eventually(
        several_attempts_failed, timeout=DEADLINE, message="three failed reconnections"
    )
    assert not broker.listening
    await allow_connections(postgres_server, database, True)

    async def listening_again() -> bool:
        return broker.listening

    await eventually(listening_again, timeout=DEADLINE, message="the broker to listen again")
    await broker.close()
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert sum("restored" in record.getMessage() for record in caplog.records) == 1


# SQLite: the change watcher ---------------------------------------------------------------


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[SqlJobStore]:
    opened = await SqlJobStore.open(sqlite_url)
    yield opened
    await opened.close()


async def test_a_paused_queue_backlog_wakes_no_waiter_on_sqlite(
    sqlite_store: SqlJobStore, sqlite_url: str
) -> None:
    broker = DatabaseBroker(sqlite_store, poll_interval=POLL_INTERVAL)
    await broker.start()
    producer = await SqlJobStore.open(sqlite_url)
    try:
        await sqlite_store.pause_queue("paused")
        waiter_on_paused = await start_waiting(broker, ["paused"])
        await enqueue(producer, "paused")
        # A later change wakes a waiter on another queue: by then the paused queue's job
        # has been looked at, and it woke nobody.
        waiter_on_b = await start_waiting(broker, ["b"])
        await enqueue(producer, "b")
        await asyncio.wait_for(waiter_on_b, DEADLINE)
        assert not waiter_on_paused.done()

        await producer.resume_queue("paused")
        await asyncio.wait_for(waiter_on_paused, DEADLINE)
    finally:
        await producer.close()
        await broker.close()
