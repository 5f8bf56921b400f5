"""Queues (with pause and resume), registered tasks, live workers and statistics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from conveyor.api.problems import problem_responses
from conveyor.api.representations import (
    QueueListOut,
    QueueStateOut,
    StatsOut,
    TaskListOut,
    WorkerListOut,
    queue_out,
    stats_out,
    task_out,
    worker_out,
)
from conveyor.api.security import Admin, Reader, tenant_scope
from conveyor.api.state import Facade
from conveyor.api.strict_json import StrictJSONRoute

router = APIRouter(route_class=StrictJSONRoute)

QueueName = Annotated[str, Path(max_length=200, description="the queue's name")]
# Throughput is counted per minute, so a window is at least one minute; at most a day.
STATS_WINDOW_RANGE = (60, 86_400)
DEFAULT_STATS_WINDOW = 900
READ_PROBLEMS = problem_responses(401, 403, 503)
ADMIN_PROBLEMS = problem_responses(401, 403, 422, 503)


@router.get(
    "/queues",
    tags=["queues"],
    response_model=QueueListOut,
    summary="Queues: counts by state, paused, age of the oldest queued job",
    responses=READ_PROBLEMS,
)
async def list_queues(conveyor: Facade, principal: Reader) -> QueueListOut:
    queues = await conveyor.list_queues(tenant=tenant_scope(principal))
    return QueueListOut(items=[queue_out(queue) for queue in queues])


@router.post(
    "/queues/{name}/pause",
    tags=["queues"],
    response_model=QueueStateOut,
    summary="Stop claiming from a queue (running jobs finish)",
    responses=ADMIN_PROBLEMS,
)
async def pause_queue(name: QueueName, conveyor: Facade, principal: Admin) -> QueueStateOut:
    await conveyor.pause_queue(name)
    return QueueStateOut(name=name, paused=True)


@router.post(
    "/queues/{name}/resume",
    tags=["queues"],
    response_model=QueueStateOut,
    summary="Start claiming from a paused queue again",
    responses=ADMIN_PROBLEMS,
)
async def resume_queue(name: QueueName, conveyor: Facade, principal: Admin) -> QueueStateOut:
    await conveyor.resume_queue(name)
    return QueueStateOut(name=name, paused=False)


@router.get(
    "/tasks",
    tags=["tasks"],
    response_model=TaskListOut,
    summary="Tasks registered by workers, with their argument schemas",
    responses=READ_PROBLEMS,
)
async def list_tasks(conveyor: Facade, principal: Reader) -> TaskListOut:
    return TaskListOut(items=[task_out(task) for task in await conveyor.list_tasks()])


@router.get(
    "/workers",
    tags=["workers"],
    response_model=WorkerListOut,
    summary="Live workers",
    responses=READ_PROBLEMS,
)
async def list_workers(conveyor: Facade, principal: Reader) -> WorkerListOut:
    return WorkerListOut(items=[worker_out(worker) for worker in await conveyor.list_workers()])


@router.get(
    "/stats",
    tags=["stats"],
    response_model=StatsOut,
    summary="Counts, success rate, throughput, wait and run time percentiles",
    responses=problem_responses(401, 403, 422, 503),
)
async def stats(
    conveyor: Facade,
    principal: Reader,
    window: Annotated[
        int,
        Query(
            ge=STATS_WINDOW_RANGE[0],
            le=STATS_WINDOW_RANGE[1],
            description="seconds of history for rates and percentiles",
        ),
    ] = DEFAULT_STATS_WINDOW,
) -> StatsOut:
    return stats_out(
        await conveyor.stats(tenant=tenant_scope(principal), window_seconds=float(window))
    )
