"""The Conveyor facade: the composition root, which picks the backends for a deployment.

Producers, the CLI and the HTTP API all go through `Conveyor`. Backends (conveyor.backends)
are opened lazily, one set per event loop, because database drivers bind connections to the
loop that made them; `blocking()` gives synchronous code one shared background loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Self

from conveyor.backends import Backend, open_store
from conveyor.config import Settings, load_settings
from conveyor.core.access import ApiKey, Principal, Role, digest_of, key_id_of, matches, mint_key
from conveyor.core.errors import FieldError, InvalidSubmission, JobFailed, UnknownTask
from conveyor.core.job import DEFAULT_TENANT, Job, JobState, JSONValue, NewJob
from conveyor.ports import (
    AlikeJobs,
    Broker,
    CancelNotice,
    Enqueued,
    JobCounts,
    JobFilter,
    JobPage,
    JobStats,
    JobStore,
    MetricsSnapshot,
    QueueInfo,
    TaskInfo,
    WorkerInfo,
    ready_jobs,
)
from conveyor.runtime.monitor import Monitor
from conveyor.runtime.registry import Task, TaskRegistry
from conveyor.runtime.signals import install_signal_handlers
from conveyor.runtime.submission import JobBuilder, SubmitOptions, TaskDefaults, checked_name
from conveyor.runtime.validation import validate_against_schema
from conveyor.runtime.watching import follow_job
from conveyor.runtime.worker import Worker
from conveyor.runtime.worker_settings import SECONDS_PER_DAY, WorkerSettings, default_worker_id
from conveyor.store import migrate
from conveyor.store.sql import SqlJobStore

# How long a task registered by a worker is trusted before the store is asked again.
REMOTE_TASK_CACHE_SECONDS = 5.0


class Conveyor:
    """A Conveyor application: its tasks, its settings, and its connection to the store."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings if settings is not None else load_settings(**overrides)
        self.registry = TaskRegistry(submitter=self)
        self.task = self.registry.task
        self._backends: dict[asyncio.AbstractEventLoop, Backend] = {}
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
            await backend.broker.announce(ready_jobs([enqueued.job]))
        return enqueued.job

    async def enqueue_many(
        self,
        task: str,
        args_list: Iterable[Mapping[str, Any]],
        **options: Any,
    ) -> list[Job]:
        """Submit many jobs of one task at once: all are accepted, or none."""
        submit_options = SubmitOptions(**options)
        prepare = await self.preparer(task, submit_options)
        keyed = submit_options.idempotency_key is not None
        arguments = args_list if isinstance(args_list, Sequence) else list(args_list)
        return await self.submit(AlikeJobs(prepare, arguments, keyed=keyed))

    async def submit(self, new_jobs: Sequence[NewJob]) -> list[Job]:
        """Store already prepared jobs (possibly of several tasks) atomically."""
        return [item.job for item in await self.submit_enqueued(new_jobs)]

    async def submit_enqueued(self, new_jobs: Sequence[NewJob]) -> list[Enqueued]:
        """`submit`, telling for each job whether this call created it or replayed a key."""
        if not new_jobs:
            return []
        backend = await self._backend()
        enqueued = await backend.store.enqueue_many(new_jobs)
        await backend.broker.announce(ready_jobs(item.job for item in enqueued if item.created))
        return enqueued

    async def prepare(self, task: str, args: Mapping[str, Any], options: SubmitOptions) -> NewJob:
        """Validate a submission against the task (local code or its registered schema)."""
        return (await self.preparer(task, options))(args)

    async def preparer(
        self, task: str, options: SubmitOptions
    ) -> Callable[[Mapping[str, Any]], NewJob]:
        """`prepare` for many jobs of `task` with `options`: the task is looked up and the
        options are checked once; the returned function validates each job's arguments."""
        local = self.registry.get(task)
        declared: Task[..., Any] | TaskInfo
        if local is not None:
            declared = local
            validate: Callable[[Mapping[str, Any]], Mapping[str, Any]] = local.validate
        else:
            declared = info = await self._registered_task(task)

            def validate(args: Mapping[str, Any]) -> Mapping[str, Any]:
                validate_against_schema(task, info.args_schema, args)
                return dict(args)

        defaults = TaskDefaults(
            queue=declared.queue,
            priority=declared.priority,
            max_attempts=declared.max_attempts or self.settings.max_attempts,
            timeout=declared.timeout,
        )
        builder = JobBuilder(task, options, defaults, max_args_bytes=self.settings.max_args_bytes)

        def prepare(args: Mapping[str, Any]) -> NewJob:
            return builder.build(validate(args))

        return prepare

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
    async def get(self, job_id: str, *, tenant: str | None = DEFAULT_TENANT) -> Job:
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

    async def counts(self, *, tenant: str | None = DEFAULT_TENANT) -> JobCounts:
        return await (await self.store()).counts(tenant=tenant)

    async def cancel(self, job_id: str, *, tenant: str | None = DEFAULT_TENANT) -> Job:
        """Cancel a waiting job; ask a running one's worker to stop it (signals, heartbeat)."""
        backend = await self._backend()
        job = await backend.store.cancel(job_id, tenant=tenant)
        if job.state is JobState.RUNNING and job.cancel_requested:
            await backend.signals.publish_cancel(CancelNotice(job.id, job.attempt))
        return job

    async def retry(self, job_id: str, *, tenant: str | None = DEFAULT_TENANT) -> Job:
        backend = await self._backend()
        job = await backend.store.retry(job_id, tenant=tenant)
        await backend.broker.announce(ready_jobs([job]))
        return job

    async def delete(self, job_id: str, *, tenant: str | None = DEFAULT_TENANT) -> None:
        await (await self.store()).delete(job_id, tenant=tenant)

    async def list_tasks(self) -> list[TaskInfo]:
        return await (await self.store()).list_tasks()

    async def list_workers(self, *, include_dead: bool = False) -> list[WorkerInfo]:
        return await (await self.store()).list_workers(include_dead=include_dead)

    async def watch(
        self, job_id: str, *, tenant: str | None = DEFAULT_TENANT, interval: float = 0.25
    ) -> AsyncGenerator[Job, None]:
        """Yield the job each time its state or progress changes, ending when terminal.

        The store is read every `interval`; progress notices (Redis) show progress sooner.
        """
        backend = await self._backend()
        following = follow_job(backend.store, backend.signals, job_id, tenant, interval)
        async with contextlib.aclosing(following):
            async for job in following:
                yield job

    async def wait(
        self, job_id: str, *, timeout: float | None = None, tenant: str | None = DEFAULT_TENANT
    ) -> JSONValue:
        """The job's result once it completes; JobFailed if it ends failed or cancelled,
        TimeoutError if it has not ended within `timeout` seconds."""
        watching = self.watch(job_id, tenant=tenant, interval=0.05)
        async with asyncio.timeout(timeout), contextlib.aclosing(watching):
            async for job in watching:
                if job.state is JobState.COMPLETED:
                    return job.result
                if job.is_terminal:
                    error = job.error.message if job.error else None
                    raise JobFailed(job.id, job.state.value, error)
        raise AssertionError("watch() ends only at a terminal state")  # pragma: no cover

    # queues, statistics, health ----------------------------------------------------
    async def list_queues(self, *, tenant: str | None = DEFAULT_TENANT) -> list[QueueInfo]:
        return await (await self.store()).list_queues(tenant=tenant)

    async def pause_queue(self, name: str) -> None:
        """Workers stop claiming from `name` (running jobs finish) until it is resumed."""
        await (await self.store()).pause_queue(checked_name("queue", name))

    async def resume_queue(self, name: str) -> None:
        await (await self.store()).resume_queue(checked_name("queue", name))

    async def stats(
        self, *, tenant: str | None = DEFAULT_TENANT, window_seconds: float = 900.0
    ) -> JobStats:
        return await (await self.store()).stats(tenant=tenant, window_seconds=window_seconds)

    async def metrics(self) -> MetricsSnapshot:
        return await (await self.store()).metrics()

    async def check_health(self) -> dict[str, str | None]:
        """Each dependency and its problem (None when it answers): the store, the broker."""
        backend = await self._backend()
        checks: dict[str, str | None] = {}
        for name, ping in (("store", backend.store.ping), ("broker", backend.broker.ping)):
            try:
                await ping()
            except Exception as error:  # a readiness probe reports, it does not raise
                checks[name] = str(error) or type(error).__name__
            else:
                checks[name] = None
        return checks

    @property
    def optional_checks(self) -> frozenset[str]:
        """Health checks whose failure degrades the platform without stopping it: Redis as
        the broker (submissions and claims then go through the store alone)."""
        return frozenset({"broker"}) if self.settings.redis_url else frozenset()

    # API keys ----------------------------------------------------------------------
    async def create_api_key(
        self, *, name: str, tenant: str = DEFAULT_TENANT, role: Role = Role.WRITE
    ) -> tuple[ApiKey, str]:
        """A new key and its plaintext, which is shown once: only its digest is stored."""
        checked_name("tenant", tenant)
        if not 0 < len(name.strip()) <= 200:
            raise InvalidSubmission([FieldError(("name",), "must be 1 to 200 characters")])
        minted = mint_key()
        key = ApiKey(
            id=minted.key_id, name=name, tenant=tenant, role=Role(role), digest=minted.digest
        )
        return await (await self.store()).create_api_key(key), minted.plaintext

    async def list_api_keys(self) -> list[ApiKey]:
        return await (await self.store()).list_api_keys()

    async def revoke_api_key(self, key_id: str) -> ApiKey:
        return await (await self.store()).revoke_api_key(key_id)

    async def authenticate(self, plaintext: str) -> Principal | None:
        """Who a presented key belongs to, or None for an unknown or revoked key."""
        admin_key = self.settings.admin_key
        if admin_key and matches(plaintext, digest_of(admin_key)):
            return Principal(DEFAULT_TENANT, Role.ADMIN, "bootstrap")
        key_id = key_id_of(plaintext)
        if key_id is None:
            return None
        key = await (await self.store()).find_api_key(key_id)
        if key is None or key.revoked or not matches(plaintext, key.digest):
            return None
        return Principal(key.tenant, key.role, key.id)

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
            signals=backend.signals,
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
        backend = await self._backend()
        await backend.broker.start()
        monitor = Monitor(
            backend.store,
            broker=backend.broker,
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
        return await open_store(self.settings)

    async def _backend(self) -> Backend:
        loop = asyncio.get_running_loop()
        backend = self._backends.get(loop)
        if backend is None:
            backend = await Backend.open(self.settings)
            self._backends[loop] = backend
        return backend

    async def close(self) -> None:
        """Close the backends opened by the running event loop."""
        backend = self._backends.pop(asyncio.get_running_loop(), None)
        if backend is not None:
            await backend.close()
