"""Tasks and workers as workers register them, so the API can validate and show them
without importing user code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, delete, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.ports import TaskInfo, WorkerInfo
from conveyor.store.expressions import dialect_insert
from conveyor.store.schema import db_now, db_now_plus, tasks, workers

# Rows of workers silent this long are deleted, not just shown as dead.
FORGET_DEAD_WORKERS_SECONDS = 24 * 60 * 60


async def register_tasks(connection: AsyncConnection, infos: Sequence[TaskInfo]) -> None:
    if not infos:
        return
    rows = [
        {
            "name": info.name,
            "queue": info.queue,
            "priority": info.priority,
            "max_attempts": info.max_attempts,
            "timeout": info.timeout,
            "args_schema": dict(info.args_schema),
            "options": dict(info.options),
            "updated_at": db_now(),
        }
        for info in {info.name: info for info in infos}.values()  # ON CONFLICT hits a row once
    ]
    insert = dialect_insert(connection.dialect.name, tasks).values(rows)
    replaced = {name: insert.excluded[name] for name in rows[0] if name != "name"}
    await connection.execute(insert.on_conflict_do_update(index_elements=["name"], set_=replaced))


def _task_from_row(row: Row[Any]) -> TaskInfo:
    return TaskInfo(
        name=row.name,
        queue=row.queue,
        priority=row.priority,
        max_attempts=row.max_attempts,
        timeout=row.timeout,
        args_schema=row.args_schema,
        options=row.options,
    )


async def list_tasks(connection: AsyncConnection) -> list[TaskInfo]:
    rows = await connection.execute(select(tasks).order_by(tasks.c.name))
    return [_task_from_row(row) for row in rows]


async def get_task(connection: AsyncConnection, name: str) -> TaskInfo | None:
    row = (await connection.execute(select(tasks).where(tasks.c.name == name))).first()
    return None if row is None else _task_from_row(row)


async def register_worker(connection: AsyncConnection, worker: WorkerInfo) -> None:
    values = {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "queues": list(worker.queues),
        "concurrency": worker.concurrency,
        "running_jobs": worker.running_jobs,
        "alive": True,
        "started_at": db_now(),
        "last_heartbeat_at": db_now(),
    }
    insert = dialect_insert(connection.dialect.name, workers).values(values)
    replaced = {name: insert.excluded[name] for name in values if name != "id"}
    await connection.execute(insert.on_conflict_do_update(index_elements=["id"], set_=replaced))


async def worker_heartbeat(
    connection: AsyncConnection, *, worker_id: str, running_jobs: int
) -> None:
    statement = (
        update(workers)
        .where(workers.c.id == worker_id)
        .values(last_heartbeat_at=db_now(), running_jobs=running_jobs, alive=true())
    )
    await connection.execute(statement)


async def deregister_worker(connection: AsyncConnection, *, worker_id: str) -> None:
    await connection.execute(delete(workers).where(workers.c.id == worker_id))


async def mark_dead_workers(connection: AsyncConnection, *, silent_for_seconds: float) -> int:
    marked = (
        update(workers)
        .where(workers.c.alive, workers.c.last_heartbeat_at < db_now_plus(-silent_for_seconds))
        .values(alive=False)
        .returning(workers.c.id)
    )
    dead = len((await connection.execute(marked)).all())
    forgotten = delete(workers).where(
        ~workers.c.alive,
        workers.c.last_heartbeat_at < db_now_plus(-FORGET_DEAD_WORKERS_SECONDS),
    )
    await connection.execute(forgotten)
    return dead


def _worker_from_row(row: Row[Any]) -> WorkerInfo:
    return WorkerInfo(
        id=row.id,
        host=row.host,
        pid=row.pid,
        queues=tuple(row.queues),
        concurrency=row.concurrency,
        started_at=row.started_at,
        last_heartbeat_at=row.last_heartbeat_at,
        running_jobs=row.running_jobs,
        alive=bool(row.alive),
    )


async def list_workers(connection: AsyncConnection, *, include_dead: bool) -> list[WorkerInfo]:
    query = select(workers).order_by(workers.c.id)
    if not include_dead:
        query = query.where(workers.c.alive)
    return [_worker_from_row(row) for row in await connection.execute(query)]
