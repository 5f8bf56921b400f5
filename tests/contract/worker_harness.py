"""Running a real Worker in the test's event loop, against a real store, with short leases."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import update

from conveyor.brokers.database import DatabaseBroker
from conveyor.brokers.redis import RedisBroker
from conveyor.brokers.redis_signals import RedisSignals
from conveyor.core.job import JobState
from conveyor.core.retry import RetryPolicy
from conveyor.ports import Broker, JobStore, Signals
from conveyor.runtime.monitor import Monitor
from conveyor.runtime.registry import TaskRegistry
from conveyor.runtime.worker import Worker, WorkerSettings
from conveyor.store.schema import db_now_plus, jobs
from conveyor.store.sql import SqlJobStore
from tests.backends import Deployment
from tests.waiting import eventually

# DESIGN §8: a 2-second lease and a 0.5-second monitor must work.
FAST = WorkerSettings(
    worker_id="test-worker",
    concurrency=4,
    lease_seconds=2.0,
    heartbeat_seconds=0.5,
    poll_interval_seconds=0.1,
    shutdown_grace_seconds=5.0,
    progress_interval_seconds=0.5,
    retry=RetryPolicy(base_seconds=0.01, max_seconds=0.05),
    monitor_interval_seconds=0.5,
)
WAIT = 30.0  # deadline for anything a worker should do within a few seconds


@dataclass
class RunningWorker:
    worker: Worker
    task: asyncio.Task[None]  # running worker.run()
    stores: list[SqlJobStore]  # its own store first, then the heartbeat thread's

    async def stopped(self) -> None:
        """Wait (with a deadline) for run() to return after a stop request."""
        await asyncio.wait_for(asyncio.shield(self.task), timeout=WAIT)


def broker_for(deployment: Deployment, store: SqlJobStore) -> Broker:
    """The broker a worker of this deployment uses, as `Conveyor` would pick it."""
    if deployment.redis_url is None:
        return DatabaseBroker(store, poll_interval=FAST.poll_interval_seconds)
    return RedisBroker(
        store,
        url=deployment.redis_url,
        prefix=deployment.redis_prefix or "conveyor:",
        poll_interval=FAST.poll_interval_seconds,
    )


def signals_for(deployment: Deployment) -> Signals | None:
    """The signals a worker of this deployment uses: Redis pub/sub, or none at all."""
    if deployment.redis_url is None:
        return None
    return RedisSignals(url=deployment.redis_url, prefix=deployment.redis_prefix or "conveyor:")


@asynccontextmanager
async def running_worker(
    target: Deployment | str,
    registry: TaskRegistry,
    *,
    store_class: type[SqlJobStore] = SqlJobStore,
    **settings: Any,
) -> AsyncIterator[RunningWorker]:
    """A worker running as a task of this loop until the block ends (then stopped at once).

    `target` is a deployment, or the URL of a store that is its own broker. Every store
    the worker opens (its own, and the heartbeat thread's) is a `store_class`, so that a
    test can count or disturb the calls made on them.
    """
    deployment = Deployment(target) if isinstance(target, str) else target
    database_url = deployment.database_url
    stores: list[SqlJobStore] = []

    async def open_store() -> JobStore:
        store = await store_class.open(database_url)
        stores.append(store)
        return store

    store = await open_store()
    assert isinstance(store, SqlJobStore)
    broker = broker_for(deployment, store)
    signals = signals_for(deployment)
    worker = Worker(
        store=store,
        broker=broker,
        signals=signals,
        store_factory=open_store,
        registry=registry,
        settings=replace(FAST, **settings),
    )
    running = asyncio.create_task(worker.run())
    try:
        await ready(worker, running)
        yield RunningWorker(worker, running, stores)
    finally:
        await stop(worker, running)
        if signals is not None:
            await signals.close()
        await broker.close()
        await store.close()


async def ready(worker: Worker, running: asyncio.Task[None]) -> None:
    waiting = asyncio.ensure_future(worker.ready.wait())
    await asyncio.wait({waiting, running}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        running.result()  # raises what stopped it
    assert waiting.done(), "the worker did not become ready"


async def stop(worker: Worker, running: asyncio.Task[None]) -> None:
    if not running.done():
        worker.request_stop()
        worker.request_stop()
    await asyncio.wait_for(running, timeout=WAIT)


# Flags: named events shared by a test and the handlers it runs (same process, any thread).
_flags: dict[str, threading.Event] = {}
_flags_lock = threading.Lock()


def flag(name: str) -> threading.Event:
    with _flags_lock:
        return _flags.setdefault(name, threading.Event())


def new_flag() -> str:
    """A flag name no other test uses."""
    return f"flag-{secrets.token_hex(6)}"


async def wait_for_flag(name: str, *, timeout: float = WAIT) -> None:
    async def raised() -> bool:
        return flag(name).is_set()

    await eventually(raised, timeout=timeout, message=f"flag {name}")


async def until_flag(name: str) -> None:
    """In an async handler: wait for the test to raise the flag."""
    # A threading.Event (plain-function handlers share it) cannot be awaited: poll it.
    while not flag(name).is_set():
        await asyncio.sleep(0.01)


async def wait_until_released(worker: Worker, job_id: str) -> None:
    """Until the worker holds no lease on the job any more (settled, or given up)."""

    async def released() -> bool:
        return job_id not in worker.active_jobs

    await eventually(released, timeout=WAIT, message=f"the worker to let go of {job_id}")


async def expire_lease(store: SqlJobStore, job_id: str, *, attempt: int) -> None:
    """Make the lease of the job's claim for `attempt` look expired, as if its worker had
    stopped heartbeating; a later claim of the job (a higher attempt) is left alone."""
    statement = (
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.attempt == attempt, jobs.c.state == "running")
        .values(lease_expires_at=db_now_plus(-60))
    )
    async with store.engine.begin() as connection:
        await connection.execute(statement)


async def steal(store: SqlJobStore, job_id: str) -> None:
    """Expire the job's current claim and have it rescued, by this call or by a monitor
    that got there first; retried because a heartbeat may renew the lease in between.
    Only that claim is taken away, never the one a worker makes next."""
    attempt = (await store.get(job_id)).attempt

    async def rescued() -> bool:
        await expire_lease(store, job_id, attempt=attempt)
        await store.rescue_expired(limit=10)
        job = await store.get(job_id)
        return job.state is not JobState.RUNNING or job.attempt != attempt

    await eventually(rescued, timeout=WAIT, message=f"job {job_id} to be rescued")


@contextmanager
def monitor_in_thread(deployment: Deployment, **options: Any) -> Iterator[None]:
    """A monitor on its own thread and loop: it keeps running while the test's loop is
    blocked, like a monitor in another process would."""
    stopping = threading.Event()

    async def monitor_until_stopped() -> None:
        store = await SqlJobStore.open(deployment.database_url)
        broker = broker_for(deployment, store)
        monitor = Monitor(
            store,
            broker=broker,
            holder_id="thread-monitor",
            interval_seconds=0.5,
            lease_seconds=FAST.lease_seconds,
            retention_seconds=3600,
            **options,
        )
        running = asyncio.create_task(monitor.run())
        await asyncio.to_thread(stopping.wait)
        monitor.request_stop()
        await running
        await broker.close()
        await store.close()

    thread = threading.Thread(target=asyncio.run, args=(monitor_until_stopped(),))
    thread.start()
    try:
        yield
    finally:
        stopping.set()
        thread.join(timeout=WAIT)
