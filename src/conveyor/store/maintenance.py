"""The monitor's passes: promote due jobs, rescue expired leases, prune old jobs.

Each pass is one bounded statement, so a large backlog is worked off over several passes
instead of one long transaction that blocks workers.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, case, delete, literal, null, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.core.job import TERMINAL_STATES, JobState, Transition, rule
from conveyor.ports import CounterEvent, Maintenance, ReadyJob
from conveyor.store.claims import picked
from conveyor.store.counters import Tally, record
from conveyor.store.expressions import appended, json_object, state_in
from conveyor.store.notify import notify_ready
from conveyor.store.schema import db_now, db_now_plus, jobs
from conveyor.store.statements import AlchemyStatements

_PROMOTE = rule(Transition.PROMOTE)
_RESCUE = rule(Transition.RESCUE)
_RESCUE_LAST = rule(Transition.RESCUE_LAST)
_CANCEL_RUNNING = rule(Transition.CANCEL_RUNNING)

# What each state a rescue leaves a job in counts as.
_RESCUED_EVENTS = {
    JobState.QUEUED.value: CounterEvent.RETRIED,
    JobState.FAILED.value: CounterEvent.FAILED,
    JobState.CANCELLED.value: CounterEvent.CANCELLED,
}

LEASE_EXPIRED = "LeaseExpired"
LEASE_EXPIRED_MESSAGE = "the worker holding the job stopped heartbeating (lease expired)"


async def promote_due(connection: AsyncConnection, *, limit: int) -> Maintenance:
    if limit <= 0:
        return Maintenance()
    sources = state_in(_PROMOTE.sources)
    due = picked(
        connection.dialect.name,
        sources,
        jobs.c.run_at <= db_now(),
        order_by=[jobs.c.run_at, jobs.c.id],
        limit=limit,
    )
    statement = (
        update(jobs)
        .where(due)
        .values(state=_PROMOTE.target.value)
        .returning(jobs.c.id, jobs.c.queue, jobs.c.priority)
    )
    ready = tuple(ReadyJob(*row) for row in await connection.execute(statement))
    await notify_ready(connection, (job.queue for job in ready))
    return Maintenance(promoted=len(ready), ready=ready)


def _rescued_state() -> ColumnElement[str]:
    # Attempts were counted at claim, so a job that keeps killing workers runs out of them.
    return case(
        (jobs.c.cancel_requested, _CANCEL_RUNNING.target.value),
        (jobs.c.attempt >= jobs.c.max_attempts, _RESCUE_LAST.target.value),
        else_=_RESCUE.target.value,
    )


def _lease_expired_error() -> ColumnElement[object]:
    return json_object(
        literal("type"), literal(LEASE_EXPIRED),
        literal("message"), literal(LEASE_EXPIRED_MESSAGE),
        literal("traceback"), null(),
        literal("attempt"), jobs.c.attempt,
    )  # fmt: skip


async def rescue_expired(connection: AsyncConnection, *, limit: int) -> Maintenance:
    if limit <= 0:
        return Maintenance()
    sources = _RESCUE.sources | _RESCUE_LAST.sources | _CANCEL_RUNNING.sources
    expired = picked(
        connection.dialect.name,
        state_in(sources),
        jobs.c.lease_expires_at < db_now(),
        order_by=[jobs.c.lease_expires_at],
        limit=limit,
    )
    retrying = ~jobs.c.cancel_requested & (jobs.c.attempt < jobs.c.max_attempts)
    statement = (
        update(jobs)
        .where(expired)
        .values(
            state=_rescued_state(),
            errors=case(
                (jobs.c.cancel_requested, jobs.c.errors),
                else_=appended(jobs.c.errors, _lease_expired_error()),
            ),
            run_at=case((retrying, db_now()), else_=jobs.c.run_at),
            finished_at=case((retrying, null()), else_=db_now()),
            lease_token=null(),
            lease_expires_at=null(),
        )
        .returning(jobs.c.state, jobs.c.id, jobs.c.queue, jobs.c.priority)
    )
    rows = (await connection.execute(statement)).all()
    requeued = tuple(
        ReadyJob(row.id, row.queue, row.priority)
        for row in rows
        if row.state == JobState.QUEUED.value
    )
    await notify_ready(connection, (job.queue for job in requeued))
    tally = Tally()
    for row in rows:
        tally.count(_RESCUED_EVENTS[row.state], row.queue)
    await record(AlchemyStatements(connection), tally)
    dead = sum(1 for row in rows if row.state == _RESCUE_LAST.target.value)
    return Maintenance(rescued=len(rows) - dead, dead_lettered=dead, ready=requeued)


async def prune(connection: AsyncConnection, *, older_than_seconds: float, limit: int) -> int:
    if limit <= 0:
        return 0
    old = (
        select(jobs.c.id)
        .where(
            state_in(TERMINAL_STATES),
            jobs.c.finished_at < db_now_plus(-older_than_seconds),
        )
        .order_by(jobs.c.finished_at)
        .limit(limit)
    )
    statement = (
        delete(jobs)
        .where(jobs.c.id.in_(old.scalar_subquery()), state_in(TERMINAL_STATES))
        .returning(jobs.c.id)
    )
    return len((await connection.execute(statement)).all())
