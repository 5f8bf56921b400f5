"""What users do to jobs: cancel, retry, delete. Each is one conditional statement.

The statement names the states it applies to; when it matches no row, a read tells a
missing job (JobNotFound) from one in the wrong state (InvalidTransition).
"""

from __future__ import annotations

from sqlalchemy import case, delete, false, null, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.core.errors import InvalidTransition, JobNotFound
from conveyor.core.job import TERMINAL_STATES, Job, JobState, Transition, rule
from conveyor.ports import CounterEvent
from conveyor.store.counters import Tally, record
from conveyor.store.expressions import state_in
from conveyor.store.notify import notify_ready
from conveyor.store.queries import of_tenant, state_of
from conveyor.store.rows import job_from_row
from conveyor.store.schema import db_now, jobs
from conveyor.store.statements import AlchemyStatements

_CANCEL = rule(Transition.CANCEL)
_RETRY = rule(Transition.MANUAL_RETRY)
_WAITING = sorted(state.value for state in _CANCEL.sources)
_RUNNING = JobState.RUNNING.value


async def cancel(connection: AsyncConnection, job_id: str, tenant: str | None) -> Job:
    """Waiting jobs end at once; a running job is asked to stop, and its worker obeys."""
    waiting = state_in(_WAITING)
    statement = (
        update(jobs)
        .where(jobs.c.id == job_id, *of_tenant(tenant), state_in([*_WAITING, _RUNNING]))
        .values(
            state=case((waiting, _CANCEL.target.value), else_=jobs.c.state),
            finished_at=case((waiting, db_now()), else_=jobs.c.finished_at),
            cancel_requested=case((waiting, jobs.c.cancel_requested), else_=true()),
        )
        .returning(*jobs.c)
    )
    row = (await connection.execute(statement)).first()
    if row is None:
        raise await _refusal(connection, job_id, tenant, "cancel")
    job = job_from_row(row)
    if job.state is JobState.CANCELLED:  # a running job is counted when its worker stops
        tally = Tally()
        tally.count(CounterEvent.CANCELLED, job.queue)
        await record(AlchemyStatements(connection), tally)
    return job


async def retry(connection: AsyncConnection, job_id: str, tenant: str | None) -> Job:
    """A failed or cancelled job runs again from its first attempt; its errors stay as history."""
    statement = (
        update(jobs)
        .where(
            jobs.c.id == job_id,
            *of_tenant(tenant),
            state_in(_RETRY.sources),
        )
        .values(
            state=_RETRY.target.value,
            attempt=0,
            run_at=db_now(),
            finished_at=null(),
            result=null(),
            progress=null(),
            cancel_requested=false(),
        )
        .returning(*jobs.c)
    )
    row = (await connection.execute(statement)).first()
    if row is None:
        raise await _refusal(connection, job_id, tenant, "retry")
    job = job_from_row(row)
    await notify_ready(connection, [job.queue])
    return job


async def delete_job(connection: AsyncConnection, job_id: str, tenant: str | None) -> None:
    statement = (
        delete(jobs)
        .where(jobs.c.id == job_id, *of_tenant(tenant), state_in(TERMINAL_STATES))
        .returning(jobs.c.id)
    )
    if (await connection.execute(statement)).first() is None:
        raise await _refusal(connection, job_id, tenant, "delete")


async def _refusal(
    connection: AsyncConnection, job_id: str, tenant: str | None, action: str
) -> JobNotFound | InvalidTransition:
    state = await state_of(connection, job_id, tenant)
    if state is None:
        return JobNotFound(job_id)
    return InvalidTransition(job_id, action, state.value)
