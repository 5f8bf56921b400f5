"""Everything /metrics shows, read in one transaction across every tenant."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.ports import MetricsSnapshot
from conveyor.store.counters import read_totals
from conveyor.store.queues import queue_contents
from conveyor.store.schema import workers


async def metrics(connection: AsyncConnection) -> MetricsSnapshot:
    contents = await queue_contents(connection, None)
    totals = await read_totals(connection)
    alive = select(func.count()).select_from(workers).where(workers.c.alive)
    return MetricsSnapshot(
        jobs={
            (queue, state): jobs
            for queue, states in contents.jobs.items()
            for state, jobs in states.items()
        },
        oldest_queued_age_seconds=contents.oldest_queued_age_seconds,
        counters=totals.events,
        run_time=totals.run_time,
        workers_alive=(await connection.execute(alive)).scalar_one(),
    )
