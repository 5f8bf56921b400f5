"""The ready jobs in claim order, page by page: what an id-based broker's reconciler reads.

A page continues from the position of the last job of the previous one (keyset paging on
the ready index's order: priority descending, then run_at, then id), so reading the millionth
ready job costs what reading the first does. The index orders priority descending and the
rest ascending, which no single row comparison expresses; so a page is at most two index
range scans: the rest of the current priority, then the lower priorities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.core.job import JobState
from conveyor.ports import ReadyJob
from conveyor.store.schema import db_now_plus, jobs


@dataclass(frozen=True, slots=True)
class ReadyPosition:
    """Where a page of ready jobs ended: the claim-order key of its last job."""

    priority: int
    run_at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class ReadyPage:
    jobs: list[ReadyJob]
    end: ReadyPosition | None  # None: the page is empty
    last: bool  # no ready job comes after this page (as of the read)


async def ready_page(
    connection: AsyncConnection,
    *,
    after: ReadyPosition | None,
    limit: int,
    ready_for_seconds: float,
) -> ReadyPage:
    """Up to `limit` queued jobs after `after` (from the first with None) in claim order,
    leaving out those that became ready less than `ready_for_seconds` ago."""
    if limit <= 0:
        raise ValueError("limit must be >= 1")
    rows = []
    if after is None:
        rows = list(await connection.execute(_ready(ready_for_seconds, limit)))
    else:
        rest_of_priority = _ready(ready_for_seconds, limit).where(
            jobs.c.priority == after.priority,
            tuple_(jobs.c.run_at, jobs.c.id) > tuple_(after.run_at, after.id),
        )
        rows = list(await connection.execute(rest_of_priority))
        if len(rows) < limit:
            lower = _ready(ready_for_seconds, limit - len(rows))
            rows += await connection.execute(lower.where(jobs.c.priority < after.priority))
    if not rows:
        return ReadyPage(jobs=[], end=None, last=True)
    end = rows[-1]
    return ReadyPage(
        jobs=[ReadyJob(row.id, row.queue, row.priority) for row in rows],
        end=ReadyPosition(end.priority, end.run_at, end.id),
        last=len(rows) < limit,
    )


async def queued_among(connection: AsyncConnection, job_ids: Sequence[str]) -> frozenset[str]:
    """Which of these jobs are `queued` now."""
    query = select(jobs.c.id).where(
        jobs.c.id.in_(list(job_ids)), jobs.c.state == JobState.QUEUED.value
    )
    return frozenset((await connection.execute(query)).scalars())


def _ready(ready_for_seconds: float, limit: int) -> Select[tuple[str, str, int, datetime]]:
    query = select(jobs.c.id, jobs.c.queue, jobs.c.priority, jobs.c.run_at).where(
        jobs.c.state == JobState.QUEUED.value
    )
    if ready_for_seconds > 0:
        query = query.where(jobs.c.run_at <= db_now_plus(-ready_for_seconds))
    return query.order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id).limit(limit)
