"""Store outages: the worker logs each once, backs off, never drops an outcome, and picks
up again by itself once the store answers (FIELD-FAILURES #5)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from typing import ClassVar

import pytest
from sqlalchemy import text

from conveyor.core.errors import StoreUnavailable
from conveyor.core.job import JobState, NewJob
from conveyor.ports import Claim, Renewal, Settlement
from conveyor.runtime.registry import TaskRegistry
from conveyor.store.sql import SqlJobStore
from tests.backends import ON_EVERY_BROKER, Deployment
from tests.contract.worker_harness import (
    WAIT,
    flag,
    new_flag,
    running_worker,
    until_flag,
    wait_for_flag,
)
from tests.waiting import eventually, wait_for_state

registry = TaskRegistry()


@registry.task(name="echo")
async def echo(value: int) -> int:
    return value


@registry.task(name="hold")
async def hold(started: str, release: str) -> str:
    flag(started).set()
    await until_flag(release)
    return "finished"


class FlakyStore(SqlJobStore):
    """The real store, except that the calls named in `down` fail as if it were gone."""

    down: ClassVar[set[str]] = set()
    failures: ClassVar[Counter[str]] = Counter()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def _reach(self, call: str) -> None:
        if call in self.down:
            with self._lock:
                self.failures[call] += 1
            raise StoreUnavailable(f"job store unavailable (simulated outage of {call})")

    async def claim(
        self, *, worker_id: str, queues: Collection[str], limit: int, lease_seconds: float
    ) -> list[Claim]:
        self._reach("claim")
        return await super().claim(
            worker_id=worker_id, queues=queues, limit=limit, lease_seconds=lease_seconds
        )

    async def claim_ids(
        self, *, worker_id: str, job_ids: Sequence[str], lease_seconds: float
    ) -> list[Claim]:
        self._reach("claim")  # the Redis broker's claims
        return await super().claim_ids(
            worker_id=worker_id, job_ids=job_ids, lease_seconds=lease_seconds
        )

    async def paused_queues(self) -> frozenset[str]:
        self._reach("claim")  # the Redis broker reads them before it pops ids to claim
        return await super().paused_queues()

    async def settle(self, settlements: Sequence[Settlement]) -> frozenset[str]:
        self._reach("settle")
        return await super().settle(settlements)

    async def renew(
        self, *, worker_id: str, job_ids: Collection[str], lease_seconds: float
    ) -> Renewal:
        self._reach("renew")
        return await super().renew(
            worker_id=worker_id, job_ids=job_ids, lease_seconds=lease_seconds
        )


@pytest.fixture(autouse=True)
def healthy_store() -> Iterator[None]:
    FlakyStore.down.clear()
    FlakyStore.failures.clear()
    yield
    FlakyStore.down.clear()


async def failed_at_least(call: str, times: int) -> None:
    async def enough() -> bool:
        return FlakyStore.failures[call] >= times

    await eventually(enough, timeout=WAIT, message=f"{times} failed {call} calls")


def warnings_about(caplog: pytest.LogCaptureFixture, words: str) -> int:
    return sum(words in record.getMessage() for record in caplog.records)


@ON_EVERY_BROKER
async def test_claiming_rides_out_an_outage_logs_it_once_and_resumes(
    deployment: Deployment, store: SqlJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_worker(deployment, registry, store_class=FlakyStore, with_monitor=False):
        FlakyStore.down.add("claim")
        await failed_at_least("claim", 1)  # no claim that began before the outage is left
        job = (await store.enqueue(NewJob(task="echo", args={"value": 7}))).job
        await failed_at_least("claim", 4)
        FlakyStore.down.clear()

        done = await wait_for_state(store, job.id, JobState.COMPLETED)

    assert done.result == 7
    assert warnings_about(caplog, "claiming: store unavailable") == 1
    assert warnings_about(caplog, "claiming: store available again") == 1


@ON_EVERY_BROKER
async def test_an_outcome_is_kept_while_settling_fails_and_written_afterwards(
    deployment: Deployment, store: SqlJobStore
) -> None:
    started, release = new_flag(), new_flag()
    async with running_worker(
        deployment, registry, store_class=FlakyStore, with_monitor=False
    ) as running:
        job = (
            await store.enqueue(NewJob(task="hold", args={"started": started, "release": release}))
        ).job
        await wait_for_flag(started)
        FlakyStore.down.add("settle")
        flag(release).set()
        await failed_at_least("settle", 3)
        # The heartbeat keeps renewing the finished job's lease until its outcome is written.
        assert job.id in running.worker.active_jobs
        assert (await store.get(job.id)).state is JobState.RUNNING
        FlakyStore.down.clear()

        done = await wait_for_state(store, job.id, JobState.COMPLETED)

    assert (done.result, done.attempt) == ("finished", 1)


@ON_EVERY_BROKER
async def test_the_heartbeat_survives_an_outage_and_beats_again(
    deployment: Deployment, store: SqlJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_worker(deployment, registry, store_class=FlakyStore, with_monitor=False):
        FlakyStore.down.add("renew")
        await failed_at_least("renew", 3)
        [silent] = await store.list_workers()
        FlakyStore.down.clear()

        async def beat_again() -> bool:
            [worker] = await store.list_workers()
            assert worker.last_heartbeat_at is not None
            assert silent.last_heartbeat_at is not None
            return worker.last_heartbeat_at > silent.last_heartbeat_at

        await eventually(beat_again, timeout=WAIT, message="a heartbeat after the outage")

    assert warnings_about(caplog, "store unavailable") == 1


@pytest.mark.postgres
async def test_jobs_still_run_after_every_connection_to_postgres_is_killed(
    postgres_url: str,
) -> None:
    store = await SqlJobStore.open(postgres_url)
    try:
        async with running_worker(postgres_url, registry):
            first = (await store.enqueue(NewJob(task="echo", args={"value": 1}))).job
            await wait_for_state(store, first.id, JobState.COMPLETED)
            async with store.engine.begin() as connection:
                await connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            second = (await store.enqueue(NewJob(task="echo", args={"value": 2}))).job
            done = await wait_for_state(store, second.id, JobState.COMPLETED)
    finally:
        await store.close()

    assert done.result == 2
