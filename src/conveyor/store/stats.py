"""What happened recently: success rate, throughput per minute, wait and run percentiles.

Everything is measured on the database clock, read once per call. Rates count jobs that
finished `completed` or `failed` (a cancelled job may never have run its last attempt);
percentiles are computed here, by nearest rank, so both backends give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, String, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

from conveyor.core.job import TERMINAL_STATES, JobState
from conveyor.ports import JobStats, Percentiles, ThroughputBucket
from conveyor.store.expressions import state_in
from conveyor.store.queries import counts
from conveyor.store.schema import db_now, jobs

SECONDS_PER_MINUTE = 60
# Durations are sampled from the most recently finished jobs only, so that a busy window
# costs one bounded index range scan, never a pass over every finished job.
SAMPLE_LIMIT = 10_000
PERCENTS = (50, 95, 99)

_FINISHED = (JobState.COMPLETED, JobState.FAILED)


class epoch_minute(FunctionElement[int]):  # lower case: reads as a SQL function
    """The whole minutes since the epoch of an Instant column."""

    type = BigInteger()
    inherit_cache = True


@compiles(epoch_minute, "postgresql")
def _epoch_minute_postgresql(element: epoch_minute, compiler: SQLCompiler, **kw: Any) -> str:
    instant = compiler.process(element.clauses, **kw)
    return f"CAST(floor(extract(epoch FROM {instant}) / 60) AS bigint)"


@compiles(epoch_minute, "sqlite")
def _epoch_minute_sqlite(element: epoch_minute, compiler: SQLCompiler, **kw: Any) -> str:
    # Instants are epoch seconds on SQLite; CAST truncates, which is floor for them.
    return f"CAST(({compiler.process(element.clauses, **kw)}) / 60 AS INTEGER)"


class tenant_column(FunctionElement[str]):  # lower case: reads as a SQL function
    """The tenant column, which SQLite must not look jobs up by in a window query.

    Without statistics SQLite would rather read every finished job of the tenant through
    the (tenant, state) index than the window's range of the finished-jobs index. A unary
    `+` is SQLite's documented way to keep a term off an index; PostgreSQL plans by its
    statistics and gets the plain column.
    """

    type = String()
    inherit_cache = True


@compiles(tenant_column, "postgresql")
def _tenant_column_postgresql(element: tenant_column, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(tenant_column, "sqlite")
def _tenant_column_sqlite(element: tenant_column, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{compiler.process(element.clauses, **kw)}"


def nearest_rank(ordered: Sequence[float], percent: int) -> float:
    """The smallest sample at or above `percent` of a non-empty, sorted sequence."""
    rank = max(1, -(-percent * len(ordered) // 100))  # ceil, in integers: no float surprises
    return ordered[rank - 1]


def percentiles(samples: Iterable[float]) -> Percentiles:
    ordered = sorted(samples)
    if not ordered:
        return Percentiles(count=0, p50=None, p95=None, p99=None)
    p50, p95, p99 = (nearest_rank(ordered, percent) for percent in PERCENTS)
    return Percentiles(count=len(ordered), p50=p50, p95=p95, p99=p99)


@dataclass(frozen=True, slots=True)
class Minutes:
    """The whole minutes a window of `window_seconds` ending at `now` is shown as."""

    first: int  # minutes since the epoch
    count: int

    @classmethod
    def ending_at(cls, now: datetime, window_seconds: float) -> Minutes:
        count = max(1, math.ceil(window_seconds / SECONDS_PER_MINUTE))
        current = math.floor(now.timestamp() / SECONDS_PER_MINUTE)
        return cls(first=current - count + 1, count=count)

    def start(self, minute: int) -> datetime:
        return datetime.fromtimestamp(minute * SECONDS_PER_MINUTE, tz=UTC)

    def range(self) -> range:
        return range(self.first, self.first + self.count)


async def stats(connection: AsyncConnection, tenant: str | None, window_seconds: float) -> JobStats:
    now = (await connection.execute(select(db_now()))).scalar_one()
    since = now - timedelta(seconds=window_seconds)
    minutes = Minutes.ending_at(now, window_seconds)
    finished = _finished_in(tenant, min(since, minutes.start(minutes.first)))
    per_minute, in_window = await _outcomes(connection, finished, since)
    waits, runs = await _durations(connection, tenant, since)
    current = await counts(connection, tenant)
    return JobStats(
        window_seconds=window_seconds,
        by_state={state: current.by_state.get(state, 0) for state in JobState},
        by_task=current.by_task,
        success_rate=_success_rate(in_window),
        throughput=[
            ThroughputBucket(
                start=minutes.start(minute),
                completed=per_minute.get((minute, JobState.COMPLETED), 0),
                failed=per_minute.get((minute, JobState.FAILED), 0),
            )
            for minute in minutes.range()
        ],
        wait_seconds=percentiles(waits),
        run_seconds=percentiles(runs),
    )


def _finished_in(tenant: str | None, since: datetime) -> list[ColumnElement[bool]]:
    return [
        # The terminal states exactly as the finished-jobs partial index names them, so that
        # SQLite uses it; then the two that count.
        state_in(TERMINAL_STATES),
        state_in(_FINISHED),
        jobs.c.finished_at >= since,
        *([] if tenant is None else [tenant_column(jobs.c.tenant) == tenant]),
    ]


async def _outcomes(
    connection: AsyncConnection, finished: list[ColumnElement[bool]], since: datetime
) -> tuple[dict[tuple[int, JobState], int], dict[JobState, int]]:
    """Finished jobs per (minute, state), and per state within the exact window."""
    minute = epoch_minute(jobs.c.finished_at).label("minute")
    in_window = func.sum(case((jobs.c.finished_at >= since, 1), else_=0)).label("in_window")
    query = (
        select(minute, jobs.c.state, func.count().label("jobs"), in_window)
        .where(*finished)
        .group_by(minute, jobs.c.state)
    )
    per_minute: dict[tuple[int, JobState], int] = {}
    per_state: dict[JobState, int] = dict.fromkeys(_FINISHED, 0)
    for row in await connection.execute(query):
        state = JobState(row.state)
        per_minute[(int(row.minute), state)] = row.jobs
        per_state[state] += int(row.in_window or 0)
    return per_minute, per_state


def _success_rate(finished: dict[JobState, int]) -> float | None:
    total = finished[JobState.COMPLETED] + finished[JobState.FAILED]
    return finished[JobState.COMPLETED] / total if total else None


async def _durations(
    connection: AsyncConnection, tenant: str | None, since: datetime
) -> tuple[list[float], list[float]]:
    """Waits (ready to claimed) and runs (claimed to finished) of recently finished jobs."""
    query = (
        select(jobs.c.run_at, jobs.c.started_at, jobs.c.finished_at)
        .where(*_finished_in(tenant, since), jobs.c.started_at.is_not(None))
        .order_by(jobs.c.finished_at.desc())
        .limit(SAMPLE_LIMIT)
    )
    waits: list[float] = []
    runs: list[float] = []
    for row in await connection.execute(query):
        # Rounding of instants on SQLite may make a duration a hair below zero.
        waits.append(max((row.started_at - row.run_at).total_seconds(), 0.0))
        runs.append(max((row.finished_at - row.started_at).total_seconds(), 0.0))
    return waits, runs
