"""Fixtures that give every test its own, real job store: a SQLite file or a PostgreSQL
database copied from a migrated template, and a Redis key prefix.

Servers are found (or started) once per session and only when a test needs them, so a
SQLite-only run never touches PostgreSQL or Redis. See tests/backends.py.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from conveyor.store.migrate import upgrade
from conveyor.store.sql import SqlJobStore
from tests.announcing_store import open_test_store
from tests.backends import (
    DATABASES,
    REDIS_SUFFIX,
    Backend,
    Deployment,
    create_database,
    delete_keys,
    drop_database,
    find_postgres,
    find_redis,
    redis_command,
    url_for_database,
)


def _require(backend: Backend) -> str:
    """The server's URL; without one, the test fails (never skips) with how to fix it."""
    if backend.url is None:
        pytest.fail(backend.problem or "backend unavailable", pytrace=False)
    return backend.url


# PostgreSQL ----------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_server() -> AsyncIterator[Backend]:
    backend = await find_postgres()
    yield backend
    await asyncio.to_thread(backend.stop)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_template(postgres_server: Backend) -> AsyncIterator[str]:
    """A database migrated to head once per session, copied for every test.

    The name carries the process id so that parallel sessions (xdist workers, two
    developers on one server) never share or drop each other's template.
    """
    server_url = _require(postgres_server)
    name = f"conveyor_tpl_{os.getpid()}_{secrets.token_hex(3)}"
    await create_database(server_url, name)
    try:
        await upgrade(url_for_database(server_url, name))
        yield name
    finally:
        await drop_database(server_url, name)


@pytest.fixture
async def postgres_url(postgres_server: Backend, postgres_template: str) -> AsyncIterator[str]:
    """A fresh database at the schema's head, dropped after the test."""
    server_url = _require(postgres_server)
    name = f"conveyor_t_{secrets.token_hex(8)}"
    await create_database(server_url, name, template=postgres_template)
    try:
        yield url_for_database(server_url, name)
    finally:
        await drop_database(server_url, name)


# SQLite and both -----------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A file that does not exist yet; the store creates and migrates it on open."""
    return f"sqlite:///{tmp_path / 'conveyor.db'}"


@pytest.fixture(params=DATABASES)
def backend_name(request: pytest.FixtureRequest) -> str:
    """Which backends a test runs on: each test that uses it runs once per database.

    A module that also runs on Redis overrides it: `pytestmark = ON_EVERY_BROKER`.
    """
    name: str = request.param
    return name


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend_name: str) -> str:
    database = backend_name.removesuffix(REDIS_SUFFIX)
    url: str = request.getfixturevalue(f"{database}_url")
    return url


@pytest.fixture
def deployment(request: pytest.FixtureRequest, backend_name: str, database_url: str) -> Deployment:
    """The store and, for "postgres+redis", the Redis broker (with its own key prefix).

    Redis starts marked complete (its epoch key set), as a running deployment's reconciler
    leaves it: claims then go through Redis alone, and a job reaches workers only if it
    was announced (or published by the monitor), as in production."""
    if not backend_name.endswith(REDIS_SUFFIX):
        return Deployment(database_url)
    redis_url: str = request.getfixturevalue("redis_url")
    redis_prefix: str = request.getfixturevalue("redis_prefix")
    redis_command(redis_url, ["SET", f"{redis_prefix}epoch", "set-by-the-test"])
    return Deployment(database_url, redis_url=redis_url, redis_prefix=redis_prefix)


@pytest.fixture
async def store(deployment: Deployment) -> AsyncIterator[SqlJobStore]:
    """The test's store; with a Redis broker, it announces what it enqueues as the facade
    does, so that tests enqueueing through the store reach the workers."""
    opened = await open_test_store(deployment)
    try:
        yield opened
    finally:
        await opened.close()


# Redis ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Backend]:
    backend = find_redis()
    yield backend
    backend.stop()


@pytest.fixture
def redis_url(redis_server: Backend) -> str:
    return _require(redis_server)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted after the test."""
    prefix = f"conveyor-test:{secrets.token_hex(6)}:"
    yield prefix
    delete_keys(redis_url, prefix)
