"""What users ask of the store: one job, pages of jobs, counts."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.core.errors import JobNotFound
from conveyor.core.job import Job, JobState
from conveyor.ports import JobCounts, JobFilter, JobPage
from conveyor.store.engine import dump_json
from conveyor.store.expressions import document, state_in
from conveyor.store.rows import decode_cursor, encode_cursor, job_from_row
from conveyor.store.schema import jobs


def of_tenant(tenant: str | None) -> list[ColumnElement[bool]]:
    """The condition for jobs of `tenant`; none for None, which means every tenant."""
    return [] if tenant is None else [jobs.c.tenant == tenant]


async def get(connection: AsyncConnection, job_id: str, tenant: str | None) -> Job:
    query = select(jobs).where(jobs.c.id == job_id, *of_tenant(tenant))
    row = (await connection.execute(query)).first()
    if row is None:
        raise JobNotFound(job_id)
    return job_from_row(row)


async def state_of(connection: AsyncConnection, job_id: str, tenant: str | None) -> JobState | None:
    query = select(jobs.c.state).where(jobs.c.id == job_id, *of_tenant(tenant))
    state = (await connection.execute(query)).scalar()
    return None if state is None else JobState(state)


async def list_jobs(
    connection: AsyncConnection, job_filter: JobFilter, *, limit: int, cursor: str | None
) -> JobPage:
    conditions = filter_conditions(connection.dialect.name, job_filter)
    if cursor is not None:
        conditions.append(jobs.c.id < decode_cursor(cursor))
    # One row more than asked tells whether another page exists.
    query = newest_first(conditions, job_filter, max(limit, 0) + 1)
    found = [job_from_row(row) for row in await connection.execute(query)]
    items = found[: max(limit, 0)]
    more = len(found) > len(items) and bool(items)
    return JobPage(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


def newest_first(
    conditions: list[ColumnElement[bool]], job_filter: JobFilter, count: int
) -> Select[Any]:
    """The newest `count` jobs meeting `conditions` in the filter's states (any if none).

    A tenant's jobs are read one state at a time from the index (tenant, state, id), each
    range newest first and cut at `count`, and the at most `count` per state are merged:
    the rows read stay bounded by the page whatever the table holds. There is no index
    (tenant, id) to read them in one range: every update of a job (a claim, a settlement)
    added an entry to it, two of the eight index entries a drained job cost (migration
    0005). Across every tenant the primary key is read newest first.
    """
    if job_filter.tenant is None:
        states = [state_in(job_filter.states)] if job_filter.states else []
        return select(jobs).where(*conditions, *states).order_by(jobs.c.id.desc()).limit(count)
    ranges = [
        select(jobs).where(*conditions, state_in([state])).order_by(jobs.c.id.desc()).limit(count)
        for state in sorted(job_filter.states or JobState)
    ]
    if len(ranges) == 1:
        return ranges[0]
    merged = union_all(*(select(part.subquery()) for part in ranges)).subquery("newest")
    return select(merged).order_by(merged.c.id.desc()).limit(count)


def filter_conditions(dialect: str, job_filter: JobFilter) -> list[ColumnElement[bool]]:
    """The filter's conditions but its states, which `newest_first` reads its own way."""
    conditions = of_tenant(job_filter.tenant)
    if job_filter.task is not None:
        conditions.append(jobs.c.task == job_filter.task)
    if job_filter.queue is not None:
        conditions.append(jobs.c.queue == job_filter.queue)
    if job_filter.tag is not None:
        conditions.append(has_tag(dialect, job_filter.tag))
    if job_filter.created_after is not None:
        conditions.append(jobs.c.created_at > job_filter.created_after)
    if job_filter.created_before is not None:
        conditions.append(jobs.c.created_at < job_filter.created_before)
    return conditions


def has_tag(dialect: str, tag: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        # jsonb containment can use a GIN index on tags, should one be added.
        return jobs.c.tags.op("@>")(document(literal(dump_json([tag]))))
    each = func.json_each(jobs.c.tags).table_valued("value").alias("tag")
    return exists(select(literal(1)).select_from(each).where(each.c.value == tag))


async def counts(connection: AsyncConnection, tenant: str | None) -> JobCounts:
    query = (
        select(jobs.c.queue, jobs.c.task, jobs.c.state, func.count().label("jobs"))
        .where(*of_tenant(tenant))
        .group_by(jobs.c.queue, jobs.c.task, jobs.c.state)
    )
    by_state: dict[JobState, int] = defaultdict(int)
    by_queue: dict[str, dict[JobState, int]] = defaultdict(lambda: defaultdict(int))
    by_task: dict[str, dict[JobState, int]] = defaultdict(lambda: defaultdict(int))
    for row in await connection.execute(query):
        state = JobState(row.state)
        by_state[state] += row.jobs
        by_queue[row.queue][state] += row.jobs
        by_task[row.task][state] += row.jobs
    return JobCounts(
        by_state=dict(by_state),
        by_queue=_plain(by_queue),
        by_task=_plain(by_task),
    )


def _plain(nested: dict[str, dict[JobState, int]]) -> dict[str, dict[JobState, int]]:
    return {name: dict(states) for name, states in nested.items()}
