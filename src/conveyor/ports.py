"""The seams between the runtime and its backends, as typed protocols and small values.

The runtime (worker, monitor) and the facade code against these; `client.py` alone picks
the implementations. One behaviour suite (tests/contract) runs against every backend.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, overload

from conveyor.core.access import ApiKey
from conveyor.core.job import DEFAULT_TENANT, Job, JobState, JSONValue, NewJob, Progress
from conveyor.core.outcome import Outcome

# Where a method takes `tenant`, None means every tenant: only admin callers pass it.


class AlikeJobs(Sequence[NewJob]):
    """The jobs of one `enqueue_many` call: one task, one set of options, a job for each
    mapping of arguments, each built (its arguments validated) when first read, in order.

    A store that writes them chunk by chunk builds each chunk while the server stores the
    one before; a job that fails to build raises there, and the store keeps nothing. A
    store that needs them all first reads them all first (`list(jobs)`)."""

    def __init__(
        self,
        build: Callable[[Mapping[str, Any]], NewJob],
        args_list: Sequence[Mapping[str, Any]],
        *,
        keyed: bool,
    ) -> None:
        self._build = build
        self._args_list = args_list
        self._built: list[NewJob] = []
        self.keyed = keyed
        """Whether the jobs carry an idempotency key (the options' key, the same for all)."""

    def __len__(self) -> int:
        return len(self._args_list)

    @overload
    def __getitem__(self, index: int) -> NewJob: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[NewJob]: ...

    def __getitem__(self, index: int | slice) -> NewJob | Sequence[NewJob]:
        positions = range(len(self))[index]  # IndexError as a list would raise it
        if isinstance(positions, range):
            if not positions:
                return []
            self._build_through(max(positions[0], positions[-1]))
            if positions.step == 1:  # start and stop are positions now, never negative
                return self._built[positions.start : positions.stop]
            return [self._built[position] for position in positions]
        self._build_through(positions)
        return self._built[positions]

    def __iter__(self) -> Iterator[NewJob]:
        self._build_through(len(self) - 1)
        return iter(self._built)

    def _build_through(self, position: int) -> None:
        built = self._built
        while len(built) <= position:
            built.append(self._build(self._args_list[len(built)]))


@dataclass(frozen=True, slots=True)
class Enqueued:
    """The store's answer to an enqueue: the job, and whether this call created it."""

    job: Job
    created: bool


@dataclass(frozen=True, slots=True)
class Claim:
    """A job a worker now holds: `token` fences every write made under this claim."""

    job: Job
    token: str


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome of one run, to be applied only while `token` still holds the lease."""

    job_id: str
    token: str
    outcome: Outcome
    progress: Progress | None = None


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    job_id: str
    token: str
    progress: Progress


@dataclass(frozen=True, slots=True)
class Renewal:
    """What a heartbeat learned: which leases still hold and which jobs were cancelled."""

    held: frozenset[str]
    cancel_requested: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    tenant: str | None = DEFAULT_TENANT  # None: every tenant
    states: Collection[JobState] = ()
    task: str | None = None
    queue: str | None = None
    tag: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobPage:
    items: Sequence[Job]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class JobCounts:
    by_state: Mapping[JobState, int]
    by_queue: Mapping[str, Mapping[JobState, int]]
    by_task: Mapping[str, Mapping[JobState, int]]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueInfo:
    name: str
    paused: bool
    counts: Mapping[JobState, int]  # every state present, zeros included
    oldest_queued_age_seconds: float | None  # None when nothing is queued


@dataclass(frozen=True, slots=True, kw_only=True)
class Percentiles:
    count: int  # how many samples; the percentiles are None when there are none
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ThroughputBucket:
    start: datetime  # the start of the minute, by the database clock
    completed: int
    failed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStats:
    """What happened recently: counts now, and rates and durations over `window_seconds`."""

    window_seconds: float
    by_state: Mapping[JobState, int]
    by_task: Mapping[str, Mapping[JobState, int]]
    # completed / (completed + failed) among jobs that finished in the window; None if none.
    success_rate: float | None
    throughput: Sequence[ThroughputBucket]  # one per minute of the window, oldest first
    wait_seconds: Percentiles  # ready (run_at) to claimed (started_at), jobs finished in window
    run_seconds: Percentiles  # claimed to finished, jobs finished in the window


# Upper bounds (seconds) of the run-time histogram's buckets; +Inf is implied.
RUN_TIME_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip


class CounterEvent(StrEnum):
    """Monotonic counters the store keeps per queue, for /metrics."""

    ENQUEUED = "enqueued"  # created by enqueue/enqueue_many (not idempotent replays)
    COMPLETED = "completed"
    FAILED = "failed"  # reached `failed`: settle or rescue of the last attempt
    RETRIED = "retried"  # an attempt failed and the job will run again (settle or rescue)
    CANCELLED = "cancelled"  # reached `cancelled`


@dataclass(frozen=True, slots=True, kw_only=True)
class RunTimeHistogram:
    bucket_counts: tuple[int, ...]  # per RUN_TIME_BUCKETS bound, NOT cumulative, then +Inf
    total_seconds: float
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSnapshot:
    """Everything /metrics shows, read in one visit to the store (all tenants)."""

    jobs: Mapping[tuple[str, JobState], int]  # (queue, state) -> jobs now
    oldest_queued_age_seconds: Mapping[str, float]  # queue -> age of its oldest queued job
    counters: Mapping[tuple[CounterEvent, str], int]  # (event, queue) -> total since creation
    run_time: Mapping[str, RunTimeHistogram]  # queue -> attempts' run time
    workers_alive: int


@dataclass(frozen=True, slots=True)
class ReadyJob:
    """What a broker needs to hand out a `queued` job: its id, queue and priority."""

    id: str
    queue: str
    priority: int

    @classmethod
    def of(cls, job: Job) -> ReadyJob:
        return cls(id=job.id, queue=job.queue, priority=job.priority)


def ready_jobs(jobs: Iterable[Job]) -> list[ReadyJob]:
    """The `queued` ones among `jobs` (a delayed job is not ready: the monitor promotes it)."""
    return [ReadyJob.of(job) for job in jobs if job.state is JobState.QUEUED]


@dataclass(frozen=True, slots=True)
class Maintenance:
    """What one pass of a monitor loop changed."""

    promoted: int = 0
    rescued: int = 0
    dead_lettered: int = 0
    pruned: int = 0
    dead_workers: int = 0
    republished: int = 0  # ready jobs the broker lacked, published again by the reconciler
    # The jobs this pass made `queued` (promoted, rescued): the monitor announces them.
    ready: tuple[ReadyJob, ...] = ()


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What one bounded step of a broker's reconciler did."""

    republished: int = 0  # ids the broker lacked and now holds
    round_done: bool = True  # the step reached the end of the ready jobs: a round is complete
    # The broker knows it lost ids (it restarted empty, or was unreachable) and is refilling
    # itself: the monitor comes back sooner than its interval until this is False.
    catching_up: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInfo:
    """A task as workers register it, so other processes can validate without user code."""

    name: str
    queue: str
    priority: int = 0
    max_attempts: int | None = None
    timeout: float | None = None
    args_schema: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, JSONValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: datetime | None = None
    last_heartbeat_at: datetime | None = None
    running_jobs: int = 0
    alive: bool = True


class JobStore(Protocol):
    """The durable source of truth. Every state change is one conditional statement."""

    # producers ---------------------------------------------------------------------
    async def enqueue(self, job: NewJob, *, connection: Any = None) -> Enqueued:
        """Insert one job; a repeated idempotency key returns the existing job.

        With `connection` (a SQLAlchemy AsyncConnection, PostgreSQL), the insert joins the
        caller's transaction: the job exists if and only if that transaction commits.
        """
        ...

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        """Insert many jobs in one statement, atomically; answers in the input's order."""
        ...

    # workers -----------------------------------------------------------------------
    async def claim(
        self, *, worker_id: str, queues: Collection[str], limit: int, lease_seconds: float
    ) -> list[Claim]:
        """Take up to `limit` ready jobs: highest priority first, FIFO within a priority.

        One statement sets state `running`, a fresh token, `attempt + 1` and the lease
        expiry from the database clock. An empty `queues` means every queue.
        """
        ...

    async def claim_ids(
        self, *, worker_id: str, job_ids: Sequence[str], lease_seconds: float
    ) -> list[Claim]:
        """Claim exactly these jobs where they are still `queued` (for id-based brokers)."""
        ...

    async def renew(
        self, *, worker_id: str, job_ids: Collection[str], lease_seconds: float
    ) -> Renewal:
        """Extend, in one statement, the leases this worker holds on `job_ids`.

        Only the jobs the worker knows it runs: a claim whose reply was lost (the connection
        dropped after the commit) is left to expire and be rescued, not renewed forever.
        """
        ...

    async def settle(self, settlements: Sequence[Settlement]) -> frozenset[str]:
        """Apply outcomes in one statement where the token still matches; return those ids."""
        ...

    async def record_progress(self, updates: Sequence[ProgressUpdate]) -> frozenset[str]:
        """Store progress where the token still matches; return the ids written."""
        ...

    # users -------------------------------------------------------------------------
    async def get(self, job_id: str, *, tenant: str | None = DEFAULT_TENANT) -> Job:
        """Raises JobNotFound (also for another tenant's job)."""
        ...

    async def list_jobs(
        self, job_filter: JobFilter, *, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        """Newest first; `cursor` is the opaque `next_cursor` of the previous page."""
        ...

    async def counts(self, *, tenant: str | None = DEFAULT_TENANT) -> JobCounts: ...

    async def cancel(self, job_id: str, *, tenant: str | None = DEFAULT_TENANT) -> Job:
        """Waiting jobs are cancelled at once; a running job gets `cancel_requested`.

        Raises InvalidTransition for a terminal job.
        """
        ...

    async def retry(self, job_id: str, *, tenant: str | None = DEFAULT_TENANT) -> Job:
        """A `failed` or `cancelled` job goes back to `queued` with its attempts reset."""
        ...

    async def delete(self, job_id: str, *, tenant: str | None = DEFAULT_TENANT) -> None:
        """Delete a terminal job; InvalidTransition otherwise."""
        ...

    # queues, statistics, metrics ---------------------------------------------------
    async def pause_queue(self, name: str) -> None:
        """Claims skip a paused queue's jobs until it is resumed (any name may be paused)."""
        ...

    async def resume_queue(self, name: str) -> None:
        """Resuming a queue that is not paused changes nothing."""
        ...

    async def list_queues(self, *, tenant: str | None = DEFAULT_TENANT) -> list[QueueInfo]:
        """Every queue that has jobs of `tenant`, a registered task, or is paused; by name."""
        ...

    async def stats(
        self, *, tenant: str | None = DEFAULT_TENANT, window_seconds: float = 900.0
    ) -> JobStats: ...

    async def metrics(self) -> MetricsSnapshot: ...

    # API keys ----------------------------------------------------------------------
    async def create_api_key(self, key: ApiKey) -> ApiKey:
        """Store a key (its digest); `created_at` comes from the database clock."""
        ...

    async def find_api_key(self, key_id: str) -> ApiKey | None:
        """The key with this id, revoked or not; None when there is none."""
        ...

    async def list_api_keys(self) -> list[ApiKey]:
        """Every key, oldest first, revoked ones included."""
        ...

    async def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revoke a key (revoking twice keeps the first instant); ApiKeyNotFound otherwise."""
        ...

    # monitor -----------------------------------------------------------------------
    async def promote_due(self, *, limit: int) -> Maintenance:
        """Move due `scheduled` and `retryable` jobs to `queued` (`promoted`, `ready`)."""
        ...

    async def rescue_expired(self, *, limit: int) -> Maintenance:
        """Requeue running jobs whose lease expired; the last attempt goes to `failed`,
        a job with a pending cancel request to `cancelled`. `ready` lists the requeued."""
        ...

    async def prune(self, *, older_than_seconds: float, limit: int) -> int:
        """Delete terminal jobs finished longer ago than `older_than_seconds`."""
        ...

    async def try_lead(self, *, holder: str, ttl_seconds: float) -> bool:
        """Take or keep the monitor leadership; False while another holder has it."""
        ...

    async def resign(self, *, holder: str) -> None: ...

    # registry and liveness ---------------------------------------------------------
    async def register_tasks(self, tasks: Sequence[TaskInfo]) -> None: ...

    async def list_tasks(self) -> list[TaskInfo]: ...

    async def get_task(self, name: str) -> TaskInfo | None: ...

    async def register_worker(self, worker: WorkerInfo) -> None: ...

    async def worker_heartbeat(self, *, worker_id: str, running_jobs: int) -> None: ...

    async def deregister_worker(self, *, worker_id: str) -> None: ...

    async def mark_dead_workers(self, *, silent_for_seconds: float) -> int: ...

    async def list_workers(self, *, include_dead: bool = False) -> list[WorkerInfo]: ...

    # lifecycle ---------------------------------------------------------------------
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""
        ...

    async def close(self) -> None: ...


class Broker(Protocol):
    """Tells workers which jobs to claim next and wakes them when work arrives."""

    async def start(self) -> None: ...

    async def claim(
        self, *, worker_id: str, queues: Collection[str], limit: int, lease_seconds: float
    ) -> list[Claim]: ...

    async def announce(self, ready: Sequence[ReadyJob]) -> None:
        """Called after jobs became `queued` and that was committed; never raises.

        A hint for the database broker; for an id-based broker (Redis) the way a job reaches
        workers, with `reconcile` as the safety net for announcements that were lost.
        """
        ...

    async def reconcile(self, *, limit: int) -> Reconciliation:
        """One bounded step (at most `limit` ready jobs looked at) of making the broker hold
        every job the store has `queued`; the monitor's leader calls it every pass. A broker
        that reads the store itself has nothing to do."""
        ...

    async def wait_for_work(self, queues: Collection[str], timeout: float) -> None:
        """Return when work may be ready in `queues`, or after `timeout` seconds."""
        ...

    async def ping(self) -> None:
        """Raise unless the broker answers (readiness checks)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CancelNotice:
    """A user asked to cancel the run of `job_id` whose attempt is `attempt`."""

    job_id: str
    attempt: int  # a later run of the same job (retried by hand) is not touched


@dataclass(frozen=True, slots=True)
class ProgressNotice:
    """A running job reported progress (the store has it within the progress interval)."""

    job_id: str
    attempt: int
    progress: Progress


class Signals(Protocol):
    """Notices between processes that make things happen sooner: a cancel reaching the
    worker that runs the job, progress reaching an event stream. Best effort: a notice that
    is lost costs latency only, because every consumer also learns it from the store (the
    heartbeat sees `cancel_requested`, `watch` polls). Redis pub/sub when Redis is the
    broker; nothing at all otherwise.

    Nothing here raises because the transport is down: publishing is skipped, and a
    listener that cannot subscribe yet waits a bounded time, then listens anyway and is
    subscribed once the transport is back (notices published meanwhile are lost).
    """

    async def publish_cancel(self, notice: CancelNotice) -> None:
        """Never raises."""
        ...

    async def publish_progress(self, notices: Sequence[ProgressNotice]) -> None:
        """Never raises; one round trip for the lot."""
        ...

    def cancellations(self) -> AbstractAsyncContextManager[AsyncIterator[CancelNotice]]:
        """Every cancel notice published while the context is open; subscribed when
        `__aenter__` returns. The iterator ends at `close()`."""
        ...

    def follow_progress(
        self, job_id: str
    ) -> AbstractAsyncContextManager[AsyncIterator[ProgressNotice]]:
        """One job's progress notices while the context is open; subscribed when
        `__aenter__` returns, so nothing published after that is missed. The iterator
        ends at `close()`; a slow reader loses the oldest notices, never the latest."""
        ...

    async def close(self) -> None: ...
