"""What the API answers: response models (so the OpenAPI schema is exact) and converters.

The job object is the one DESIGN.md §6 shows: `error` is the latest failed attempt (or
null), `progress` the last report (or null). Tenants, lease fields and key digests never
leave the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from conveyor.core.access import ApiKey, Role
from conveyor.core.job import ErrorInfo, Job, JobState, Progress
from conveyor.ports import JobPage, JobStats, Percentiles, QueueInfo, TaskInfo, WorkerInfo


class ProgressOut(BaseModel):
    percent: float
    message: str | None


class ErrorOut(BaseModel):
    type: str
    message: str
    attempt: int


class JobOut(BaseModel):
    id: str
    task: str
    queue: str
    state: JobState
    priority: int
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: ProgressOut | None
    result: Any
    error: ErrorOut | None
    idempotency_key: str | None
    tags: list[str]
    worker: str | None


class JobPageOut(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class JobBatchOut(BaseModel):
    jobs: list[JobOut]


class ResultOut(BaseModel):
    id: str
    state: JobState
    result: Any
    error: ErrorOut | None


def progress_out(progress: Progress | None) -> ProgressOut | None:
    if progress is None:
        return None
    return ProgressOut(percent=progress.percent, message=progress.message)


def error_out(error: ErrorInfo | None) -> ErrorOut | None:
    if error is None:
        return None
    return ErrorOut(type=error.type, message=error.message, attempt=error.attempt)


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        task=job.task,
        queue=job.queue,
        state=job.state,
        priority=job.priority,
        args=dict(job.args),
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        run_at=job.run_at,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=progress_out(job.progress),
        result=job.result,
        error=error_out(job.error),
        idempotency_key=job.idempotency_key,
        tags=list(job.tags),
        worker=job.worker,
    )


def page_out(page: JobPage) -> JobPageOut:
    return JobPageOut(items=[job_out(job) for job in page.items], next_cursor=page.next_cursor)


def result_out(job: Job) -> ResultOut:
    return ResultOut(id=job.id, state=job.state, result=job.result, error=error_out(job.error))


# queues, tasks, workers -----------------------------------------------------------------


class QueueOut(BaseModel):
    name: str
    paused: bool
    counts: dict[JobState, int]
    oldest_queued_age_seconds: float | None


class QueueListOut(BaseModel):
    items: list[QueueOut]


class QueueStateOut(BaseModel):
    name: str
    paused: bool


class TaskOut(BaseModel):
    name: str
    queue: str
    priority: int
    max_attempts: int | None
    timeout: float | None
    options: dict[str, Any]
    args_schema: dict[str, Any]


class TaskListOut(BaseModel):
    items: list[TaskOut]


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    running_jobs: int
    started_at: datetime | None
    last_heartbeat_at: datetime | None


class WorkerListOut(BaseModel):
    items: list[WorkerOut]


def queue_out(queue: QueueInfo) -> QueueOut:
    return QueueOut(
        name=queue.name,
        paused=queue.paused,
        counts=dict(queue.counts),
        oldest_queued_age_seconds=queue.oldest_queued_age_seconds,
    )


def task_out(task: TaskInfo) -> TaskOut:
    return TaskOut(
        name=task.name,
        queue=task.queue,
        priority=task.priority,
        max_attempts=task.max_attempts,
        timeout=task.timeout,
        options=dict(task.options),
        args_schema=dict(task.args_schema),
    )


def worker_out(worker: WorkerInfo) -> WorkerOut:
    return WorkerOut(
        id=worker.id,
        host=worker.host,
        pid=worker.pid,
        queues=list(worker.queues),
        concurrency=worker.concurrency,
        running_jobs=worker.running_jobs,
        started_at=worker.started_at,
        last_heartbeat_at=worker.last_heartbeat_at,
    )


# statistics -----------------------------------------------------------------------------


class PercentilesOut(BaseModel):
    count: int
    p50: float | None
    p95: float | None
    p99: float | None


class ThroughputOut(BaseModel):
    start: datetime
    completed: int
    failed: int


class StatsOut(BaseModel):
    window_seconds: float
    by_state: dict[JobState, int]
    by_task: dict[str, dict[JobState, int]]
    success_rate: float | None
    throughput: list[ThroughputOut]
    wait_seconds: PercentilesOut
    run_seconds: PercentilesOut


def _percentiles_out(percentiles: Percentiles) -> PercentilesOut:
    return PercentilesOut(
        count=percentiles.count, p50=percentiles.p50, p95=percentiles.p95, p99=percentiles.p99
    )


def stats_out(stats: JobStats) -> StatsOut:
    return StatsOut(
        window_seconds=stats.window_seconds,
        by_state=dict(stats.by_state),
        by_task={task: dict(counts) for task, counts in stats.by_task.items()},
        success_rate=stats.success_rate,
        throughput=[
            ThroughputOut(start=bucket.start, completed=bucket.completed, failed=bucket.failed)
            for bucket in stats.throughput
        ],
        wait_seconds=_percentiles_out(stats.wait_seconds),
        run_seconds=_percentiles_out(stats.run_seconds),
    )


# API keys -------------------------------------------------------------------------------


class KeyOut(BaseModel):
    id: str
    name: str
    tenant: str
    role: Role
    created_at: datetime | None
    revoked_at: datetime | None


class KeyListOut(BaseModel):
    items: list[KeyOut]


class NewKeyOut(KeyOut):
    key: str  # the plaintext, shown this once: only its digest is stored


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        tenant=key.tenant,
        role=key.role,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


def new_key_out(key: ApiKey, plaintext: str) -> NewKeyOut:
    return NewKeyOut(**key_out(key).model_dump(), key=plaintext)
