"""Queues: pausing and resuming them, and what each one holds.

A queue exists wherever a job, a registered task or a pause names it; `conveyor_queues`
keeps a row only for queues that were ever paused or resumed. Pausing stops claims (see
claims.queue_not_paused); enqueues still land and running jobs still finish.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.core.job import JobState
from conveyor.ports import QueueInfo
from conveyor.store.expressions import dialect_insert
from conveyor.store.queries import of_tenant
from conveyor.store.schema import db_now, jobs, queues, tasks


async def set_paused(connection: AsyncConnection, name: str, *, paused: bool) -> None:
    insert = dialect_insert(connection.dialect.name, queues).values(
        name=name, paused=paused, updated_at=db_now()
    )
    replaced = {"paused": insert.excluded.paused, "updated_at": insert.excluded.updated_at}
    await connection.execute(insert.on_conflict_do_update(index_elements=["name"], set_=replaced))


async def paused_names(connection: AsyncConnection) -> frozenset[str]:
    rows = await connection.execute(select(queues.c.name).where(queues.c.paused))
    return frozenset(rows.scalars())


@dataclass(frozen=True, slots=True)
class QueueContents:
    """Jobs per queue and state, and how long each queue's oldest ready job has waited."""

    jobs: Mapping[str, Mapping[JobState, int]]
    oldest_queued_age_seconds: Mapping[str, float]


async def queue_contents(connection: AsyncConnection, tenant: str | None) -> QueueContents:
    """One grouped read; the age is measured on the database clock."""
    query = (
        select(
            jobs.c.queue,
            jobs.c.state,
            func.count().label("jobs"),
            func.min(jobs.c.run_at).label("oldest_run_at"),
            db_now().label("now"),
        )
        .where(*of_tenant(tenant))
        .group_by(jobs.c.queue, jobs.c.state)
    )
    counted: dict[str, dict[JobState, int]] = defaultdict(dict)
    ages: dict[str, float] = {}
    for row in await connection.execute(query):
        state = JobState(row.state)
        counted[row.queue][state] = row.jobs
        if state is JobState.QUEUED:
            ages[row.queue] = _age_seconds(row.oldest_run_at, row.now)
    return QueueContents(jobs=dict(counted), oldest_queued_age_seconds=ages)


def _age_seconds(since: datetime, now: datetime) -> float:
    # A job queued this very millisecond may look a hair younger than zero after rounding.
    return max((now - since).total_seconds(), 0.0)


async def list_queues(connection: AsyncConnection, tenant: str | None) -> list[QueueInfo]:
    contents = await queue_contents(connection, tenant)
    registered = set((await connection.execute(select(tasks.c.queue).distinct())).scalars())
    rows = await connection.execute(select(queues.c.name, queues.c.paused))
    paused = {row.name: bool(row.paused) for row in rows}
    names = sorted(contents.jobs.keys() | registered | paused.keys())
    return [
        QueueInfo(
            name=name,
            paused=paused.get(name, False),
            counts={state: contents.jobs.get(name, {}).get(state, 0) for state in JobState},
            oldest_queued_age_seconds=contents.oldest_queued_age_seconds.get(name),
        )
        for name in names
    ]
