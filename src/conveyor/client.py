"""The Conveyor facade: the composition root, and the one place a URL becomes a backend.

Producers, the CLI and (later) the HTTP API all go through `Conveyor`. Backends are opened
lazily, one set per event loop, because database drivers bind connections to the loop that
made them; `blocking()` gives synchronous code one shared background loop.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self, TypeVar

from conveyor.brokers.database import DatabaseBroker
from conveyor.config import Settings, load_settings
from conveyor.core.errors import ConfigError, JobFailed, UnknownTask
from conveyor.core.job import DEFAULT_TENANT, Job, JobState, JSONValue, NewJob
from conveyor.ports import Broker, JobCounts, JobFilter, JobPage, JobStore, TaskInfo, WorkerInfo
from conveyor.runtime.monitor import Monitor
from conveyor.runtime.registry import TaskRegistry
from conveyor.runtime.signals import install_signal_handlers
from conveyor.runtime.submission import SubmitOptions, TaskDefaults, build_new_job
from conveyor.runtime.validation import validate_against_schema
from conveyor.runtime.worker import Worker
from conveyor.runtime.worker_settings import SECONDS_PER_DAY, WorkerSettings, default_worker_id
from conveyor.store import migrate
from conveyor.store.sql import SqlJobStore

T = TypeVar("T")

# How long a task registered by a worker is trusted before the store is asked again.
REMOTE_TASK_CACHE_SECONDS = 5.0


@dataclass(slots=True)
class _Backend:
    store: SqlJobStore
    broker: DatabaseBroker


class Conveyor:
    """A Conveyor application: its tasks, its settings, and its connection to the store."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings if settings is not None else load_settings(**overrides)
        self.registry = TaskRegistry(submitter=self)
        self.task = self.registry.task
        self._backends: dict[asyncio.AbstractEventLoop, _Backend] = {}
        self._remote_tasks: dict[str, tuple[float, TaskInfo]] = {}

    async def __aenter__(self) -> Self:
        await self._backend()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # producers ---------------------------------------------------------------------
    async def enqueue(
        self,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        idempotency_key: str | None = None,
        tenant: str = DEFAULT_TENANT,
        connection: Any = None,
    ) -> Job:
        """Submit one job. It is accepted once this returns; a repeated key returns the
        existing job. With `connection` (PostgreSQL), the job commits with that transaction."""
        options = SubmitOptions(
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            max_attempts=max_attempts,
            timeout=timeout,
            tags=tags,
            idempotency_key=idempotency_key,
            tenant=tenant,
        )
        new_job = await self.prepare(task, args or {}, options)
        backend = await self._backend()
        enqueued = await backend.store.enqueue(new_job, connection=connection)
        if enqueued.created and connection is None:
            await backend.broker.announce([enqueued.job])
        return enqueued.job

    async def enqueue_many(
        self,
        task: str,
        args_list: Sequence[Mapping[str, Any]],
        **options: Any,
    ) -> list[Job]:
        """Submit many jobs of one task in one statement: all are accepted, or none."""
        submit_options = SubmitOptions(**options)
        new_jobs = [await self.prepare(task, args, submit_options) for args in args_list]
        return await self.submit(new_jobs)

    async def submit(self, new_jobs: Sequence[NewJob]) -> list[Job]:
        """Store already prepared jobs (possibly of several tasks) atomically."""
        if not new_jobs:
            return []
        backend = await self._backend()
        enqueued = await backend.store.enqueue_many(new_jobs)
        await backend.broker.announce([item.job for item in enqueued if item.created])
        return [item.job for item in enqueued]

    async def prepare(self, task: str, args: Mapping[str, Any], options: SubmitOptions) -> NewJob:
        """Validate a submission against the task (local code or its registered schema)."""
        local = self.registry.get(task)
        if local is not None:
            validated = local.validate(args)
            defaults = TaskDefaults(
                queue=local.queue,
                priority=local.priority,
                max_attempts=local.max_attempts or self.settings.max_attempts,
                timeout=local.timeout,
            )
        else:
            info = await self._registered_task(task)
            validate_against_schema(task, info.args_schema, args)
            validated = dict(args)
            defaults = TaskDefaults(
                queue=info.queue,
                priority=info.priority,
                max_attempts=info.max_attempts or self.settings.max_attempts,
                timeout=info.timeout,
            )
        return build_new_job(
            task, validated, options, defaults, max_args_bytes=self.settings.max_args_bytes
        )

    async def _registered_task(self, name: str) -> TaskInfo:
        cached = self._remote_tasks.get(name)
        if cached is not None and time.monotonic() - cached[0] < REMOTE_TASK_CACHE_SECONDS:
            return cached[1]
        info = await (await self._backend()).store.get_task(name)
        if info is None:
            raise UnknownTask(name)
        self._remote_tasks[name] = (time.monotonic(), info)
        return info

    # reading and steering jobs -----------------------------------------------------
    async def get(self, job_id: str, *, tenant: str = DEFAULT_TENANT) -> Job:
        return await (await self.store()).get(job_id, tenant=tenant)

    async def list_jobs(
        self,
        job_filter: JobFilter | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        return await (await self.store()).list_jobs(
            job_filter or JobFilter(), limit=limit, cursor=cursor
        )

    async def counts(self, *, tenant: str = DEFAULT_TENANT) -> JobCounts:
        return await (await self.store()).counts(tenant=tenant)

    async def cancel(self, job_id: str, *, tenant: str = DEFAULT_TENANT) -> Job:
        return await (await self.store()).cancel(job_id, tenant=tenant)

    async def retry(self, job_id: str, *, tenant: str = DEFAULT_TENANT) -> Job:
        backend = await self._backend()
        job = await backend.store.retry(job_id, tenant=tenant)
        await backend.broker.announce([job])
        return job

    async def delete(self, job_id: str, *, tenant: str = DEFAULT_TENANT) -> None:
        await (await self.store()).delete(job_id, tenant=tenant)

    async def list_tasks(self) -> list[TaskInfo]:
        return await (await self.store()).list_tasks()

    async def list_workers(self, *, include_dead: bool = False) -> list[WorkerInfo]:
        return await (await self.store()).list_workers(include_dead=include_dead)

    async def watch(
        self, job_id: str, *, tenant: str = DEFAULT_TENANT, interval: float = 0.25
    ) -> AsyncIterator[Job]:
        """Yield the job each time its state or progress changes, ending when terminal."""
        store = await self.store()
        last: tuple[JobState, object] | None = None
        while True:
            job = await store.get(job_id, tenant=tenant)
            seen = (job.state, job.progress)
            if seen != last:
                last = seen
                yield job
            if job.is_terminal:
                return
            await asyncio.sleep(interval)

    async def wait(
        self, job_id: str, *, timeout: float | None = None, tenant: str = DEFAULT_TENANT
    ) -> JSONValue:
        """The job's result once it completes; JobFailed if it ends failed or cancelled,
        TimeoutError if it has not ended within `timeout` seconds."""
        async with asyncio.timeout(timeout):
            async for job in self.watch(job_id, tenant=tenant, interval=0.05):
                if job.state is JobState.COMPLETED:
                    return job.result
                if job.is_terminal:
                    error = job.error.message if job.error else None
                    raise JobFailed(job.id, job.state.value, error)
        raise AssertionError("watch() ends only at a terminal state")  # pragma: no cover

    # running the engine ------------------------------------------------------------
    async def build_worker(
        self,
        *,
        queues: Sequence[str] = (),
        concurrency: int | None = None,
        with_monitor: bool = True,
    ) -> Worker:
        """A worker for this app's tasks; `run()` it, `request_stop()` to end it."""
        backend = await self._backend()
        await backend.broker.start()
        settings = WorkerSettings.from_settings(
            self.settings,
            queues=tuple(queues),
            concurrency=concurrency,
            with_monitor=with_monitor,
        )
        return Worker(
            store=backend.store,
            broker=backend.broker,
            store_factory=self.open_store,
            registry=self.registry,
            settings=settings,
        )

    async def run_worker(
        self,
        *,
        queues: Sequence[str] = (),
        concurrency: int | None = None,
        with_monitor: bool = True,
    ) -> None:
        """Run a worker until SIGTERM/SIGINT: the first stops it gracefully, a second at once."""
        worker = await self.build_worker(
            queues=queues, concurrency=concurrency, with_monitor=with_monitor
        )
        uninstall = install_signal_handlers(worker)
        try:
            await worker.run()
        finally:
            uninstall()

    async def run_monitor(self) -> None:
        """Run only the maintenance loops (promote, rescue, prune) until SIGTERM/SIGINT."""
        monitor = Monitor(
            await self.store(),
            holder_id=default_worker_id(),
            interval_seconds=self.settings.monitor_interval_seconds,
            lease_seconds=self.settings.lease_seconds,
            retention_seconds=self.settings.retention_days * SECONDS_PER_DAY,
        )
        uninstall = install_signal_handlers(monitor)
        try:
            await monitor.run()
        finally:
            uninstall()

    async def migrate(self) -> None:
        """Bring the store's schema to this version's head (`conveyor db upgrade`)."""
        await migrate.upgrade(self.settings.database_url)

    async def schema_revision(self) -> tuple[str | None, str]:
        """The store's schema revision and the one this version needs."""
        current = await migrate.current_revision(self.settings.database_url)
        return current, migrate.head_revision()

    # plumbing ----------------------------------------------------------------------
    async def store(self) -> JobStore:
        """The job store for the running event loop (opened on first use)."""
        return (await self._backend()).store

    async def broker(self) -> Broker:
        return (await self._backend()).broker

    async def open_store(self) -> SqlJobStore:
        """A new store with its own connections (the worker's heartbeat thread uses one)."""
        return await SqlJobStore.open(self.settings.database_url)

    async def _backend(self) -> _Backend:
        loop = asyncio.get_running_loop()
        backend = self._backends.get(loop)
        if backend is None:
            store = await self.open_store()
            backend = _Backend(
                store, DatabaseBroker(store, poll_interval=self.settings.poll_interval_seconds)
            )
            self._backends[loop] = backend
        return backend

    async def close(self) -> None:
        """Close the backends opened by the running event loop."""
        backend = self._backends.pop(asyncio.get_running_loop(), None)
        if backend is not None:
            await backend.broker.close()
            await backend.store.close()


def load_app(spec: str) -> Conveyor:
    """Import `module:attribute` and return the Conveyor app it names, or say what is wrong."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(
            f"--app must look like MODULE:ATTRIBUTE (e.g. myapp.tasks:app), got {spec!r}"
        )
    # Like uvicorn and celery, resolve the module from the directory the command runs in.
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise ConfigError(
                f"--app {spec}: cannot import module {module_name!r} "
                f"(is it on PYTHONPATH or in the current directory?)"
            ) from None
        raise ConfigError(f"--app {spec}: importing {module_name!r} failed: {error}") from error
    app = getattr(module, attribute, None)
    if app is None:
        raise ConfigError(f"--app {spec}: module {module_name!r} has no attribute {attribute!r}")
    if not isinstance(app, Conveyor):
        raise ConfigError(
            f"--app {spec}: {attribute!r} is a {type(app).__name__}, not a Conveyor app"
        )
    return app


class _BackgroundLoop:
    """One event loop on a daemon thread, shared by every `blocking()` call."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._loop.run_forever, name="conveyor-blocking", daemon=True
        )
        thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()


_background: _BackgroundLoop | None = None
_background_lock = threading.Lock()


def blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a Conveyor coroutine from synchronous code: `blocking(app.enqueue("t", {...}))`.

    This is the one way to call the API without async (Flask, Django, scripts); there are
    no sync twins of the methods. Inside async code, `await` instead.
    """
    global _background
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coroutine.close()
        raise RuntimeError("blocking() was called inside a running event loop; use await")
    with _background_lock:
        if _background is None:
            _background = _BackgroundLoop()
    return _background.run(coroutine)
