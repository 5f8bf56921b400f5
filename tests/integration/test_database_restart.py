"""Workers survive a PostgreSQL restart: they reconnect and carry on, without a crash loop.

The test starts its own PostgreSQL server, so restarting it disturbs no other test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor import Conveyor, Job, JobState
from conveyor.core.errors import StoreUnavailable
from conveyor.store.migrate import upgrade
from tests.backends import Backend, start_postgres
from tests.integration.conftest import StartWorker, wait_until_ready
from tests.waiting import eventually, wait_for_state

pytestmark = pytest.mark.postgres


@pytest.fixture
def restartable_postgres() -> Iterator[Backend]:
    backend = start_postgres()
    yield backend
    backend.stop()


@pytest.fixture
async def database_url(restartable_postgres: Backend) -> str:
    url = restartable_postgres.require_url()
    await upgrade(url)
    return url


async def test_workers_carry_on_within_seconds_after_a_postgresql_restart(
    restartable_postgres: Backend, producer: Conveyor, start_worker: StartWorker
) -> None:
    worker = start_worker()
    await wait_until_ready(producer, worker)
    before = await producer.enqueue("itest.noop")
    await wait_for_state(producer, before.id, JobState.COMPLETED)

    assert restartable_postgres.restart is not None
    restartable_postgres.restart()

    async def enqueued() -> Job | None:
        try:
            return await producer.enqueue("itest.noop")
        except StoreUnavailable:
            return None

    after = await eventually(enqueued, timeout=30, message="the server to accept jobs again")
    done = await wait_for_state(producer, after.id, JobState.COMPLETED, timeout=30)
    assert done.result == worker.pid
    assert worker.running()
