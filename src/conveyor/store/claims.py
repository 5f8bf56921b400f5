"""The worker's side of the store: claim, renew, settle and record progress.

Each is one statement for the whole batch. Writes made under a claim are fenced by its
lease token: once a lease is rescued or settled, a stale holder's writes match no row.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from enum import Enum
from functools import cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Float,
    Integer,
    Select,
    Subquery,
    Text,
    any_,
    bindparam,
    case,
    false,
    func,
    null,
    select,
    update,
)
from sqlalchemy.sql.dml import ReturningUpdate

from conveyor.core.job import TERMINAL_STATES, JobState, Transition, rule
from conveyor.core.outcome import Cancelled, Completed, Failed, Released, Retrying, transition_for
from conveyor.ports import Claim, CounterEvent, ProgressUpdate, Renewal, Settlement
from conveyor.store.counters import (
    Tally,
    added_to_counters,
    random_shard,
    record,
    settled_tally,
)
from conveyor.store.expressions import (
    Kind,
    appended,
    batch_parameters,
    batch_table,
    one_of,
    state_in,
    state_of_found_rows_in,
)
from conveyor.store.ids import new_lease_token
from conveyor.store.notify import returning_with_wake_ups
from conveyor.store.rows import JOB_COLUMNS, error_document, job_from_values, progress_document
from conveyor.store.schema import db_now, db_now_plus, jobs, queues
from conveyor.store.statements import RowValues, Statements

_CLAIM = rule(Transition.CLAIM)
_RUNNING = JobState.RUNNING.value
_WAITING_OUTCOMES = (JobState.RETRYABLE.value, JobState.QUEUED.value)
_TERMINAL = sorted(state.value for state in TERMINAL_STATES)

_SETTLEMENT = {
    "id": Kind.TEXT,
    "token": Kind.TEXT,
    "state": Kind.TEXT,
    "result": Kind.DOCUMENT,
    "error": Kind.DOCUMENT,
    "delay": Kind.FLOAT,
    "attempt_change": Kind.INTEGER,
    "progress": Kind.DOCUMENT,
}
_PROGRESS = {"id": Kind.TEXT, "token": Kind.TEXT, "progress": Kind.DOCUMENT}
# What each state a settle leaves a job in counts as; `queued` (a release) counts nothing.
_SHARD = "counter_shard"
_SETTLED_EVENTS = {
    JobState.COMPLETED.value: CounterEvent.COMPLETED,
    JobState.FAILED.value: CounterEvent.FAILED,
    JobState.RETRYABLE.value: CounterEvent.RETRIED,
    JobState.CANCELLED.value: CounterEvent.CANCELLED,
}
_SETTLE_TRANSITIONS = (
    Transition.COMPLETE,
    Transition.RETRY_LATER,
    Transition.FAIL,
    Transition.CANCEL_RUNNING,
    Transition.RELEASE,
)


def picked(
    dialect: str,
    *conditions: ColumnElement[bool],
    order_by: Sequence[ColumnElement[Any]],
    limit: int | ColumnElement[int],
) -> ColumnElement[bool]:
    """A condition matching the first `limit` jobs meeting `conditions`, in `order_by`.

    The statement using it needs no other condition: the picked rows still meet
    `conditions` when it changes them. PostgreSQL locks them with SKIP LOCKED (re-checking
    `conditions` on a row changed since the scan), so concurrent callers pick disjoint sets
    instead of queueing on the same rows; SQLite runs writers one at a time anyway.

    On PostgreSQL the ids come as an array (`id = ANY(ARRAY(...))`), which the planner can
    only look up by primary key. Joined as a CTE instead, a fresh table without statistics
    (before autovacuum's first ANALYZE) was planned as a nested loop over every ready job
    for every picked one: 45 ms for 100 of 3 000, growing with the backlog.
    """
    chosen = select(jobs.c.id).where(*conditions).order_by(*order_by).limit(limit)
    if dialect == "postgresql":
        locked = chosen.with_for_update(skip_locked=True).scalar_subquery()
        return jobs.c.id == any_(func.array(locked))
    return jobs.c.id.in_(chosen.scalar_subquery())


def claim_order() -> list[ColumnElement[Any]]:
    return [jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id]


def queue_not_paused() -> ColumnElement[bool]:
    """True for jobs whose queue is not paused.

    NOT IN over an uncorrelated subquery is read once into a hash (PostgreSQL) or a list
    (SQLite) and probed per row: the claim keeps walking a ready index in claim order. A
    NOT EXISTS would let PostgreSQL plan an anti-join instead, and misjudged row counts
    then turn the claim into a scan and a sort.
    """
    paused = select(queues.c.name).where(queues.c.paused)
    return jobs.c.queue.not_in(paused.scalar_subquery())


def among(dialect: str, column: ColumnElement[str], parameter: str) -> ColumnElement[bool]:
    """`column` is one of the strings passed (as a list) in `parameter`.

    A PostgreSQL array parameter keeps the statement's text the same for any number of
    values, so it is prepared once; SQLite expands the list into the text at execution.
    """
    if dialect == "postgresql":
        return column == any_(bindparam(parameter, type_=ARRAY(Text)))
    return column.in_(bindparam(parameter, expanding=True))


async def claim(
    statements: Statements,
    *,
    worker_id: str,
    queues: Collection[str],
    limit: int,
    lease_seconds: float,
) -> list[Claim]:
    if limit <= 0:
        return []
    chosen = sorted(queues)
    choice = QueueChoice.of(chosen)
    statement = claim_statement(statements.dialect, choice)
    parameters = _taking(worker_id, lease_seconds, limit=limit, **choice.parameters(chosen))
    claims = await _take(statements, statement, parameters)
    # RETURNING does not keep the SELECT's order; put the claims back in claim order.
    return sorted(claims, key=lambda claim: (-claim.job.priority, claim.job.run_at, claim.job.id))


async def claim_ids(
    statements: Statements,
    *,
    worker_id: str,
    job_ids: Sequence[str],
    lease_seconds: float,
) -> list[Claim]:
    if not job_ids:
        return []
    statement = claim_ids_statement(statements.dialect)
    parameters = _taking(worker_id, lease_seconds, limit=len(job_ids), job_ids=list(job_ids))
    claims = await _take(statements, statement, parameters)
    position = {job_id: index for index, job_id in enumerate(job_ids)}
    return sorted(claims, key=lambda claim: position[claim.job.id])


def _taking(worker_id: str, lease_seconds: float, **chosen: Any) -> dict[str, Any]:
    # One token per call: (id, token) is still unique per claim.
    return {
        "claimant": worker_id,
        "lease_seconds": float(lease_seconds),
        "token": new_lease_token(),
        **chosen,
    }


async def _take(
    statements: Statements, statement: ReturningUpdate[Any], parameters: dict[str, Any]
) -> list[Claim]:
    rows = await statements.fetch(statement, parameters)
    return [Claim(job_from_values(row), parameters["token"]) for row in rows]


class QueueChoice(Enum):
    """Which queues a claim takes from; each is a statement of its own."""

    ANY = "any"
    ONE = "one"  # `queue = :one_queue`: the ready index is then read in claim order
    SEVERAL = "several"  # read from each queue, then sorted: the index has queue first

    @classmethod
    def of(cls, queues: Collection[str]) -> QueueChoice:
        return cls.ANY if not queues else cls.ONE if len(queues) == 1 else cls.SEVERAL

    def parameters(self, queues: list[str]) -> dict[str, Any]:
        """The values of this choice's statement parameters for `queues`."""
        if self is QueueChoice.ONE:
            return {"one_queue": queues[0]}
        return {"queues": queues} if self is QueueChoice.SEVERAL else {}


@cache
def claim_statement(dialect: str, choice: QueueChoice) -> ReturningUpdate[Any]:
    conditions = [state_in(_CLAIM.sources), queue_not_paused()]
    if choice is QueueChoice.ONE:
        conditions.append(jobs.c.queue == bindparam("one_queue", type_=Text))
    elif choice is QueueChoice.SEVERAL:
        conditions.append(among(dialect, jobs.c.queue, "queues"))
    limit = bindparam("limit", type_=Integer)
    return _claiming(picked(dialect, *conditions, order_by=claim_order(), limit=limit))


@cache
def claim_ids_statement(dialect: str) -> ReturningUpdate[Any]:
    # The jobs are found by primary key, never by reading a ready index. On a table not
    # analyzed yet (a backlog just submitted), the planner took the ready index for tiny
    # and read all of it for 50 ids: 19 ms a claim with 20 000 jobs queued.
    claimable = state_of_found_rows_in(_CLAIM.sources)
    conditions = (among(dialect, jobs.c.id, "job_ids"), claimable)
    limit = bindparam("limit", type_=Integer)
    chosen = picked(dialect, *conditions, queue_not_paused(), order_by=[jobs.c.id], limit=limit)
    return _claiming(chosen)


def _claiming(chosen: ColumnElement[bool]) -> ReturningUpdate[Any]:
    return (
        update(jobs)
        .where(chosen)
        .values(
            state=_CLAIM.target.value,
            attempt=jobs.c.attempt + 1,
            lease_token=bindparam("token", type_=Text),
            lease_expires_at=db_now_plus(bindparam("lease_seconds", type_=Float)),
            worker_id=bindparam("claimant", type_=Text),
            started_at=db_now(),
            cancel_requested=false(),
        )
        .returning(*JOB_COLUMNS)
    )


async def renew(
    statements: Statements,
    *,
    worker_id: str,
    job_ids: Collection[str],
    lease_seconds: float,
) -> Renewal:
    if not job_ids:
        return Renewal(held=frozenset(), cancel_requested=frozenset())
    parameters = {
        "job_ids": sorted(job_ids),
        "claimant": worker_id,
        "lease_seconds": float(lease_seconds),
    }
    rows = await statements.fetch(renew_statement(statements.dialect), parameters)
    return Renewal(
        held=frozenset(row["id"] for row in rows),
        cancel_requested=frozenset(row["id"] for row in rows if row["cancel_requested"]),
    )


@cache
def renew_statement(dialect: str) -> ReturningUpdate[Any]:
    return (
        update(jobs)
        .where(
            among(dialect, jobs.c.id, "job_ids"),
            jobs.c.worker_id == bindparam("claimant", type_=Text),
            state_of_found_rows_in([_RUNNING]),
        )
        .values(lease_expires_at=db_now_plus(bindparam("lease_seconds", type_=Float)))
        .returning(jobs.c.id, jobs.c.cancel_requested)
    )


def _settlement_row(settlement: Settlement) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": settlement.job_id,
        "token": settlement.token,
        "state": rule(transition_for(settlement.outcome)).target.value,
        "attempt_change": 0,
        "progress": _progress_or_none(settlement),
    }
    match settlement.outcome:
        case Completed(result=result):
            row["result"] = result
        case Retrying(error=error, delay=delay):
            row["error"] = error_document(error)
            row["delay"] = delay
        case Failed(error=error):
            row["error"] = error_document(error)
        case Released():
            row["delay"] = 0.0
            row["attempt_change"] = -1  # a shutdown is not the job's fault
        case Cancelled():
            pass
    return row


def _progress_or_none(settlement: Settlement) -> dict[str, Any] | None:
    return progress_document(settlement.progress) if settlement.progress else None


async def settle(statements: Statements, settlements: Sequence[Settlement]) -> frozenset[str]:
    if not settlements:
        return frozenset()
    dialect = statements.dialect
    parameters = settle_parameters(dialect, settlements)
    if dialect == "postgresql":
        parameters[_SHARD] = random_shard()
        result = await statements.fetch(_settle_counted_notified(), parameters)
        return frozenset(row["id"] for row in result)
    result = await statements.fetch(settle_statement(dialect), parameters)
    await record(statements, _settled_tally(result))
    return frozenset(row["id"] for row in result)


def settle_parameters(dialect: str, settlements: Sequence[Settlement]) -> dict[str, Any]:
    """The bound values of `settle_statement(dialect)` for `settlements`."""
    return batch_parameters(dialect, "settled", _SETTLEMENT, map(_settlement_row, settlements))


@cache
def _settle_counted_notified() -> Select[Any]:
    """PostgreSQL: the settle, its counts and run times, and its wake-ups (released jobs)
    in one statement, so that writing a batch of outcomes is one round trip."""
    settled = settle_statement("postgresql").cte("settled")
    tally = settled_tally(settled, _SETTLED_EVENTS, bindparam(_SHARD, type_=Integer))
    counted = added_to_counters("postgresql", tally).cte("counted")
    return returning_with_wake_ups(settled, counted)


def _settled_tally(settled: Sequence[RowValues]) -> Tally:
    """Each settled job by the state it reached, and the run time of every finished attempt."""
    tally = Tally()
    for row in settled:
        event = _SETTLED_EVENTS.get(row["state"])
        if event is None:
            continue  # released: the attempt was given back, as if it never ran
        tally.count(event, row["queue"])
        if row["started_at"] is not None:
            seconds = (row["settled_at"] - row["started_at"]).total_seconds()
            tally.observe_run_time(row["queue"], max(seconds, 0.0))
    return tally


# The states an outcome may be applied to: the sources of every settling transition.
_SETTLED_FROM: frozenset[JobState] = frozenset().union(
    *(rule(transition).sources for transition in _SETTLE_TRANSITIONS)
)


@cache
def settle_statement(dialect: str) -> ReturningUpdate[Any]:
    """Built once per dialect; the batch is bound as in expressions.batch_table."""
    batch = batch_table(dialect, "settled", _SETTLEMENT)
    return (
        update(jobs)
        .where(
            jobs.c.id == batch.c.id,
            jobs.c.lease_token == batch.c.token,
            state_of_found_rows_in(_SETTLED_FROM),
        )
        .values(_settled_values(batch))
        .returning(
            jobs.c.id,
            jobs.c.state,
            jobs.c.queue,
            jobs.c.started_at,
            db_now().label("settled_at"),  # when the attempt ended, by the database clock
        )
    )


def _settled_values(batch: Subquery) -> dict[str, Any]:
    # A cancel request wins over another attempt or a release: the user asked for no more runs.
    state = case(
        (jobs.c.cancel_requested & one_of(batch.c.state, _WAITING_OUTCOMES), "cancelled"),
        else_=batch.c.state,
    )
    return {
        "state": state,
        "attempt": jobs.c.attempt + batch.c.attempt_change,
        "run_at": case((batch.c.delay.is_(None), jobs.c.run_at), else_=db_now_plus(batch.c.delay)),
        "finished_at": case((one_of(state, _TERMINAL), db_now()), else_=null()),
        "result": case((batch.c.state == "completed", batch.c.result), else_=jobs.c.result),
        "errors": case(
            (batch.c.error.is_(None), jobs.c.errors),
            else_=appended(jobs.c.errors, batch.c.error),
        ),
        "progress": func.coalesce(batch.c.progress, jobs.c.progress),
        "lease_token": null(),
        "lease_expires_at": null(),
    }


async def record_progress(
    statements: Statements, updates: Sequence[ProgressUpdate]
) -> frozenset[str]:
    if not updates:
        return frozenset()
    dialect = statements.dialect
    parameters = progress_parameters(dialect, updates)
    result = await statements.fetch(progress_statement(dialect), parameters)
    return frozenset(row["id"] for row in result)


def progress_parameters(dialect: str, updates: Sequence[ProgressUpdate]) -> dict[str, Any]:
    """The bound values of `progress_statement(dialect)` for `updates`."""
    rows = [
        {"id": update.job_id, "token": update.token, "progress": progress_document(update.progress)}
        for update in updates
    ]
    return batch_parameters(dialect, "reported", _PROGRESS, rows)


@cache
def progress_statement(dialect: str) -> ReturningUpdate[Any]:
    reported = batch_table(dialect, "reported", _PROGRESS)
    return (
        update(jobs)
        .where(
            jobs.c.id == reported.c.id,
            jobs.c.lease_token == reported.c.token,
            state_of_found_rows_in([_RUNNING]),
        )
        .values(progress=reported.c.progress)
        .returning(jobs.c.id)
    )
