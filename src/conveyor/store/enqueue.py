"""Accepting jobs: one INSERT per batch, idempotency keys resolved by the unique index."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from functools import cache
from itertools import pairwise
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Insert,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.core.errors import IdempotencyConflict
from conveyor.core.job import Job, JobState, NewJob
from conveyor.ports import AlikeJobs, CounterEvent, Enqueued
from conveyor.store.counters import Tally, added_to_counters, random_shard, record
from conveyor.store.expressions import (
    Kind,
    batch_columns,
    batch_parameters,
    batch_table,
    dialect_insert,
    document,
    shared_field,
    shared_parameters,
)
from conveyor.store.ids import new_job_ids
from conveyor.store.notify import returning_with_wake_ups
from conveyor.store.rows import job_from_values, job_state
from conveyor.store.schema import db_now, db_now_plus, jobs
from conveyor.store.statements import RowValues, SentStatements, Statements

_SUBMITTED = {
    "id": Kind.TEXT,
    "tenant": Kind.TEXT,
    "task": Kind.TEXT,
    "queue": Kind.TEXT,
    "priority": Kind.INTEGER,
    "args": Kind.DOCUMENT,
    "max_attempts": Kind.INTEGER,
    "timeout": Kind.FLOAT,
    "delay": Kind.FLOAT,
    "run_at": Kind.INSTANT,
    "idempotency_key": Kind.TEXT,
    "tags": Kind.DOCUMENT,
    "fingerprint": Kind.TEXT,
}

# What differs between the jobs of one `enqueue_many` call (one task, one set of options).
_PER_JOB = {key: _SUBMITTED[key] for key in ("id", "args")}
_SHARED = {key: kind for key, kind in _SUBMITTED.items() if key not in _PER_JOB}
_shared_of = operator.attrgetter(*_SHARED)  # a submitted job's shared fields, as a tuple

_KEYS = {"tenant": Kind.TEXT, "idempotency_key": Kind.TEXT}
_SHARD = "counter_shard"

CHUNK_JOBS = 250
"""Jobs per statement when a large batch is inserted in chunks (see insert_in_chunks)."""


async def insert_jobs(statements: Statements, submitted: Sequence[NewJob]) -> list[Enqueued]:
    """Insert `submitted` in one statement; a known idempotency key yields the existing job.

    On PostgreSQL the statement also counts the jobs and wakes the workers, so a batch
    without idempotency keys needs no transaction around it. IdempotencyConflict when a
    known key comes with a different fingerprint; the transaction must then roll back, so
    that nothing of the batch is kept.
    """
    if not submitted:
        return []
    dialect = statements.dialect
    ids = new_job_ids(len(submitted))
    if dialect == "postgresql" and len(submitted) == 1 and submitted[0].idempotency_key is None:
        return await _insert_one(statements, ids[0], submitted[0])
    if dialect == "postgresql":
        alike = _all_alike(submitted)
        if alike:
            parameters = _per_job_columns(ids, submitted) | _shared_fields(ids[0], submitted[0])
        else:
            rows = map(_submitted_row, ids, submitted)
            parameters = batch_parameters(dialect, "submitted", _SUBMITTED, rows)
        parameters[_SHARD] = random_shard()
        if alike and submitted[0].idempotency_key is None:
            return await _insert_alike_without_keys(statements, submitted, ids, parameters)
        result = await statements.fetch(_insert_counted_notified(alike), parameters)
    else:
        rows = map(_submitted_row, ids, submitted)
        parameters = batch_parameters(dialect, "submitted", _SUBMITTED, rows)
        result = await statements.fetch(_insert_statement(dialect), parameters)
    by_id = dict(zip(ids, submitted, strict=True))
    created = {row["id"]: _stored_job(row["id"], by_id[row["id"]], row) for row in result}
    if dialect != "postgresql":  # PostgreSQL's statement counted them itself
        tally = Tally()
        for job in created.values():
            tally.count(CounterEvent.ENQUEUED, job.queue)
        await record(statements, tally)
    existing = await _existing_jobs(statements, submitted, ids, created)
    return [
        Enqueued(created[job_id], True) if job_id in created else Enqueued(existing[key], False)
        for job_id, key in zip(ids, map(_key_of, submitted), strict=True)
    ]


async def _insert_alike_without_keys(
    statements: Statements, submitted: Sequence[NewJob], ids: list[str], parameters: dict[str, Any]
) -> list[Enqueued]:
    """PostgreSQL, jobs of one enqueue_many call without an idempotency key: every job is
    created (no key can conflict), and the database gives them all the same state and
    instants (same options, one transaction's clock), so one row of the statement tells
    them all. A row per job cost the client more to decode than anything else it did
    for the job after building it."""
    rows = await statements.fetch(_insert_counted_notified(alike=True, summarized=True), parameters)
    return _created_alike(ids, submitted, rows)


async def _insert_one(statements: Statements, job_id: str, job: NewJob) -> list[Enqueued]:
    """PostgreSQL, one job without an idempotency key (the commonest submission): every
    field bound as a value of its own, inserted with VALUES. As a batch of one (arrays of
    one element unpacked, one row summarized) a call cost ~5 % more (issue 5)."""
    parameters = shared_parameters("submitted", _SUBMITTED, _submitted_row(job_id, job))
    parameters[_SHARD] = random_shard()
    rows = await statements.fetch(_insert_one_counted_notified(), parameters)
    if len(rows) != 1:  # without a key nothing can conflict: the row is stored or it raised
        raise RuntimeError(f"{len(rows)} jobs stored of 1 submitted")
    return [Enqueued(_stored_job(job_id, job, rows[0]), True)]


def in_chunks(submitted: Sequence[NewJob]) -> bool:
    """Whether `insert_in_chunks` takes these jobs: more than a chunk, all alike (one
    enqueue_many call), none with an idempotency key. AlikeJobs are alike by making, and
    are not built to be compared."""
    if len(submitted) <= CHUNK_JOBS:
        return False
    if isinstance(submitted, AlikeJobs):
        return not submitted.keyed
    return submitted[0].idempotency_key is None and _all_alike(submitted)


async def insert_in_chunks(
    transaction: SentStatements, submitted: Sequence[NewJob]
) -> list[Enqueued]:
    """PostgreSQL: a large batch of alike jobs (see `in_chunks`) as one statement per
    CHUNK_JOBS jobs in the caller's transaction, each sent before the client builds the
    next chunk (AlikeJobs: validates its arguments), its parameters and the last chunk's
    jobs, so that the client's work per job and the server's overlap on their two cores
    instead of adding up. Atomic as one statement would be: the transaction commits all
    the chunks or none, and a job that fails to build rolls back the ones before it."""
    ids = new_job_ids(len(submitted))
    shared = _shared_fields(ids[0], submitted[0])
    shared[_SHARD] = random_shard()
    statement = _insert_counted_notified(alike=True, summarized=True)

    def parameters(start: int) -> dict[str, Any]:
        chunk = slice(start, start + CHUNK_JOBS)
        return _per_job_columns(ids[chunk], submitted[chunk]) | shared

    starts = range(0, len(submitted), CHUNK_JOBS)
    enqueued: list[Enqueued] = []
    in_flight = await transaction.send(statement, parameters(0))
    for previous, start in pairwise(starts):
        upcoming = parameters(start)
        rows = await in_flight
        in_flight = await transaction.send(statement, upcoming)
        chunk = slice(previous, start)
        enqueued += _created_alike(ids[chunk], submitted[chunk], rows)
    last = slice(starts[-1], None)
    return enqueued + _created_alike(ids[last], submitted[last], await in_flight)


def _per_job_columns(ids: list[str], submitted: Sequence[NewJob]) -> dict[str, Any]:
    """The fields in which jobs alike differ (see _all_alike), as one column each."""
    args = [_plain(job.args) for job in submitted]
    return batch_columns("submitted", _PER_JOB, {"id": ids, "args": args})


def _shared_fields(job_id: str, job: NewJob) -> dict[str, Any]:
    """The fields jobs alike share, bound once for the batch (those of `job`)."""
    return shared_parameters("submitted", _SHARED, _submitted_row(job_id, job))


def _created_alike(
    ids: Sequence[str], submitted: Sequence[NewJob], rows: Sequence[RowValues]
) -> list[Enqueued]:
    """The jobs a summarized insert created, from its one row (see _insert_alike_without_keys)."""
    (summary,) = rows
    if summary["created"] != len(submitted):
        raise RuntimeError(f"{summary['created']} jobs stored of {len(submitted)} submitted")
    return [
        Enqueued(_stored_job(job_id, job, summary), True)
        for job_id, job in zip(ids, submitted, strict=True)
    ]


def _stored_job(job_id: str, submitted: NewJob, row: RowValues) -> Job:
    """The job as the INSERT stored it: what the producer sent, and what the database set.

    Reading every column back cost more than the insert (a wider row to send, and three
    JSON documents to parse per job). The arguments are the submitted mapping, which the
    row holds as its JSON text.
    """
    return Job(
        id=job_id,
        task=submitted.task,
        queue=submitted.queue,
        state=job_state(row["state"]),
        priority=submitted.priority,
        args=submitted.args,
        attempt=0,
        max_attempts=submitted.max_attempts,
        timeout=submitted.timeout,
        run_at=row["run_at"],
        created_at=row["created_at"],
        idempotency_key=submitted.idempotency_key,
        tags=submitted.tags,
        tenant=submitted.tenant,
    )


def _all_alike(submitted: Sequence[NewJob]) -> bool:
    """Whether the jobs differ in their `_PER_JOB` fields alone, as those of one
    enqueue_many call do."""
    first = _shared_of(submitted[0])
    return all(_shared_of(job) == first for job in submitted[1:])


def _submitted_row(job_id: str, job: NewJob) -> dict[str, Any]:
    return {
        "id": job_id,
        "tenant": job.tenant,
        "task": job.task,
        "queue": job.queue,
        "priority": job.priority,
        "args": _plain(job.args),
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "delay": job.delay,
        "run_at": job.run_at,
        "idempotency_key": job.idempotency_key,
        "tags": job.tags,
        "fingerprint": job.fingerprint,
    }


def _plain(args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as a dict, the only mapping the JSON encoder takes; a submission's
    arguments are one already (validation made them), and are not copied per job again."""
    return args if type(args) is dict else dict(args)


@cache
def _insert_statement(dialect: str, alike: bool = False) -> Insert:
    """Built once per dialect and shape: constructing the statement cost more than running it.

    `alike` (PostgreSQL): the jobs share every field but their id and arguments (see
    _all_alike); the shared fields are bound once for the batch instead of once per job.
    """
    columns = _PER_JOB if alike else _SUBMITTED
    batch = batch_table(dialect, "submitted", columns)
    fields: dict[str, ColumnElement[Any]] = {key: batch.c[key] for key in columns}
    if alike:
        fields |= {key: shared_field("submitted", key, kind) for key, kind in _SHARED.items()}
    source = _job_values(fields)
    statement = dialect_insert(dialect, jobs).from_select(
        list(source),
        select(*source.values())
        # SQLite needs a WHERE here to tell the SELECT from the ON CONFLICT that follows.
        .where(true()),
    )
    return _with_conflicts_and_returning(statement)


def _with_conflicts_and_returning(statement: postgresql.Insert | sqlite.Insert) -> Insert:
    """An insert of jobs that skips known idempotency keys and returns what the database
    decided; the rest of each job is what was submitted (_stored_job)."""
    statement = statement.on_conflict_do_nothing(
        index_elements=[jobs.c.tenant, jobs.c.idempotency_key],
        index_where=jobs.c.idempotency_key.is_not(None),
    )
    return statement.returning(
        jobs.c.id, jobs.c.queue, jobs.c.state, jobs.c.run_at, jobs.c.created_at
    )


@cache
def _insert_one_statement() -> Insert:
    """PostgreSQL: `_insert_statement` for one job, its fields bound as `shared_field`s."""
    fields = {key: shared_field("submitted", key, kind) for key, kind in _SUBMITTED.items()}
    return _with_conflicts_and_returning(
        dialect_insert("postgresql", jobs).values(_job_values(fields))
    )


@cache
def _insert_one_counted_notified() -> Select[Any]:
    return _counted_notified(_insert_one_statement())


@cache
def _insert_counted_notified(alike: bool, summarized: bool = False) -> Select[Any]:
    """`_counted_notified` for a batch of jobs (see `_insert_statement`)."""
    return _counted_notified(_insert_statement("postgresql", alike), summarized=summarized)


def _counted_notified(insert: Insert, *, summarized: bool = False) -> Select[Any]:
    """PostgreSQL: the insert, its `enqueued` counts and its wake-ups in one statement, so
    that a submission costs one round trip (five as separate statements in a transaction).

    `summarized`: one row for all the inserted jobs (how many, and the state and instants
    the first of them got) instead of a row per job.
    """
    inserted = insert.cte("inserted")
    per_queue = (
        select(
            literal(CounterEvent.ENQUEUED.value).label("name"),
            inserted.c.queue,
            literal("").label("label"),
            bindparam(_SHARD, type_=Integer).label("shard"),
            cast(func.count(), Float).label("value"),
        )
        .group_by(inserted.c.queue)
        .order_by(inserted.c.queue)  # key order: see counters.py
    )
    counted = added_to_counters("postgresql", per_queue).cte("counted")
    if not summarized:
        return returning_with_wake_ups(inserted, counted)
    summary = (
        func.count().label("created"),
        func.min(inserted.c.state).label("state"),
        func.min(inserted.c.run_at).label("run_at"),
        func.min(inserted.c.created_at).label("created_at"),
    )
    return returning_with_wake_ups(inserted, counted, columns=summary)


def _job_values(submitted: Mapping[str, ColumnElement[Any]]) -> dict[str, Any]:
    """A stored job's columns, from the fields submitted for it (by `_SUBMITTED` key)."""
    run_at = case(
        (submitted["run_at"].is_not(None), submitted["run_at"]),
        else_=db_now_plus(func.coalesce(submitted["delay"], 0.0)),
    )
    state = case((run_at > db_now(), JobState.SCHEDULED.value), else_=JobState.QUEUED.value)
    return {
        "id": submitted["id"],
        "tenant": submitted["tenant"],
        "task": submitted["task"],
        "queue": submitted["queue"],
        "state": state,
        "priority": submitted["priority"],
        "args": submitted["args"],
        "attempt": literal(0),
        "max_attempts": submitted["max_attempts"],
        "timeout": submitted["timeout"],
        "run_at": run_at,
        "created_at": db_now(),
        "cancel_requested": false(),
        "errors": document(literal("[]")),
        "idempotency_key": submitted["idempotency_key"],
        "tags": submitted["tags"],
        "fingerprint": submitted["fingerprint"],
    }


def _key_of(job: NewJob) -> tuple[str, str | None]:
    return (job.tenant, job.idempotency_key)


async def _existing_jobs(
    statements: Statements,
    submitted: Sequence[NewJob],
    ids: Sequence[str],
    created: Mapping[str, Job],
) -> dict[tuple[str, str | None], Job]:
    """The jobs that already held the idempotency keys of rows the INSERT skipped."""
    keys = {
        _key_of(job) for job_id, job in zip(ids, submitted, strict=True) if job_id not in created
    }
    if not keys:
        return {}
    dialect = statements.dialect
    rows = [{"tenant": tenant, "idempotency_key": key} for tenant, key in keys]
    batch = batch_parameters(dialect, "known", _KEYS, rows)
    stored = await statements.fetch(_existing_query(dialect), batch)
    fingerprints = {_key_of_row(row): row["fingerprint"] for row in stored}
    found = {_key_of_row(row): job_from_values(row) for row in stored}
    missing = keys - found.keys()
    if missing:
        # Only a concurrent delete between the INSERT and this SELECT can get here.
        raise RuntimeError(f"jobs with idempotency keys {sorted(map(str, missing))} vanished")
    for job_id, job in zip(ids, submitted, strict=True):
        if job_id not in created:
            _refuse_a_different_job(job, found[_key_of(job)], fingerprints[_key_of(job)])
    return found


def _refuse_a_different_job(job: NewJob, existing: Job, existing_fingerprint: str | None) -> None:
    # Jobs stored without a fingerprint (older versions, direct store calls) match any repeat.
    if job.fingerprint is None or existing_fingerprint is None:
        return
    if job.fingerprint != existing_fingerprint:
        raise IdempotencyConflict(job.idempotency_key or "", existing.id)


@cache
def _existing_query(dialect: str) -> Select[Any]:
    known = batch_table(dialect, "known", _KEYS)
    return select(jobs).join(
        known,
        and_(jobs.c.tenant == known.c.tenant, jobs.c.idempotency_key == known.c.idempotency_key),
    )


def _key_of_row(row: RowValues) -> tuple[str, str | None]:
    return (row["tenant"], row["idempotency_key"])
