"""Monotonic counters for /metrics, written in the transaction of the change they count.

A counter is a row per (name, queue, label) and shard. Each write picks a shard at random,
so concurrent transactions rarely wait on one another's row (the lock of an upserted row
is held until commit); readers sum over the shards. One upsert per transaction writes every
increment, rows in key order, so two transactions never lock the same rows in opposite orders.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    CTE,
    BindParameter,
    Float,
    Insert,
    Select,
    case,
    cast,
    func,
    literal,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.ports import RUN_TIME_BUCKETS, CounterEvent, RunTimeHistogram
from conveyor.store.expressions import (
    Kind,
    batch_parameters,
    batch_table,
    dialect_insert,
)
from conveyor.store.schema import counters
from conveyor.store.statements import Statements

SHARDS = 64

RUN_SECONDS_BUCKET = "run_seconds_bucket"  # labelled by the bucket's upper bound
RUN_SECONDS_SUM = "run_seconds_sum"
RUN_SECONDS_COUNT = "run_seconds_count"
_INFINITY_LABEL = "+Inf"

_COUNTED = {
    "name": Kind.TEXT,
    "queue": Kind.TEXT,
    "label": Kind.TEXT,
    "shard": Kind.INTEGER,
    "value": Kind.FLOAT,
}

CounterKey = tuple[str, str, str]  # (name, queue, label)


def bucket_label(index: int) -> str:
    """The label of the run-time bucket at `index` (its upper bound; +Inf after the last)."""
    if index >= len(RUN_TIME_BUCKETS):
        return _INFINITY_LABEL
    return repr(RUN_TIME_BUCKETS[index])


def bucket_index(label: str) -> int:
    """The bucket a stored label belongs to; a bound no longer listed joins the next one."""
    return bisect_left(RUN_TIME_BUCKETS, float(label))


class Tally:
    """The increments of one transaction, summed per counter row before they are written."""

    def __init__(self) -> None:
        self._values: dict[CounterKey, float] = defaultdict(float)

    def count(self, event: CounterEvent, queue: str, amount: int = 1) -> None:
        self._values[(event.value, queue, "")] += amount

    def observe_run_time(self, queue: str, seconds: float) -> None:
        # Buckets are Prometheus' `le`: the first bound at or above the observation.
        bucket = bisect_left(RUN_TIME_BUCKETS, seconds)
        self._values[(RUN_SECONDS_BUCKET, queue, bucket_label(bucket))] += 1
        self._values[(RUN_SECONDS_SUM, queue, "")] += seconds
        self._values[(RUN_SECONDS_COUNT, queue, "")] += 1

    @property
    def values(self) -> Mapping[CounterKey, float]:
        return self._values


async def record(statements: Statements, tally: Tally) -> None:
    """Add `tally` to the counters in one statement (none when there is nothing to add)."""
    if not tally.values:
        return
    dialect = statements.dialect
    shard = random_shard()
    rows = (
        {"name": name, "queue": queue, "label": label, "shard": shard, "value": value}
        for (name, queue, label), value in sorted(tally.values.items())
    )
    batch = batch_parameters(dialect, "counted", _COUNTED, rows)
    await statements.execute(_upsert_statement(dialect), batch)


@cache
def _upsert_statement(dialect: str) -> Insert:
    counted = batch_table(dialect, "counted", _COUNTED)
    source = select(*(counted.c[name] for name in _COUNTED)).order_by(
        # Rows are locked in the order they are inserted: key order, in every transaction.
        counted.c.name,
        counted.c.queue,
        counted.c.label,
    )
    return added_to_counters(dialect, source)


def added_to_counters(dialect: str, source: Select[Any]) -> Insert:
    """An upsert adding each (name, queue, label, shard, value) row of `source` to its
    counter; `source` orders its rows by key (see `_upsert_statement`)."""
    # SQLite needs a WHERE here to tell the SELECT from the ON CONFLICT that follows.
    insert = dialect_insert(dialect, counters).from_select(list(_COUNTED), source.where(true()))
    return insert.on_conflict_do_update(
        index_elements=[counters.c.name, counters.c.queue, counters.c.label, counters.c.shard],
        set_={"value": counters.c.value + insert.excluded.value},
    )


def settled_tally(
    settled: CTE, events: Mapping[str, CounterEvent], shard: BindParameter[int]
) -> Select[Any]:
    """In SQL, what `Tally` counts for settled rows (`state`, `queue`, `started_at`,
    `settled_at`): each by the event its state is in `events` (rows of other states are
    left out), and the run time of each in the histogram; in key order."""
    event = case(*((settled.c.state == state, literal(e.value)) for state, e in events.items()))
    seconds = func.greatest(
        cast(func.extract("epoch", settled.c.settled_at - settled.c.started_at), Float), 0.0
    )
    bucket = case(
        *((seconds <= bound, literal(bucket_label(i))) for i, bound in enumerate(RUN_TIME_BUCKETS)),
        else_=literal(bucket_label(len(RUN_TIME_BUCKETS))),
    )
    counted = event.is_not(None)
    timed = counted & settled.c.started_at.is_not(None)
    one = cast(func.count(), Float)
    parts = union_all(
        select(event.label("name"), settled.c.queue, literal("").label("label"), one.label("value"))
        .where(counted)
        .group_by(event, settled.c.queue),
        select(literal(RUN_SECONDS_BUCKET), settled.c.queue, bucket, one)
        .where(timed)
        .group_by(settled.c.queue, bucket),
        select(literal(RUN_SECONDS_SUM), settled.c.queue, literal(""), func.sum(seconds))
        .where(timed)
        .group_by(settled.c.queue),
        select(literal(RUN_SECONDS_COUNT), settled.c.queue, literal(""), one)
        .where(timed)
        .group_by(settled.c.queue),
    ).subquery("tallied")
    name, queue, label, value = parts.c
    return select(name, queue, label, shard.label("shard"), value).order_by(name, queue, label)


def random_shard() -> int:
    return random.randrange(SHARDS)


@dataclass(frozen=True, slots=True)
class CounterTotals:
    events: Mapping[tuple[CounterEvent, str], int]
    run_time: Mapping[str, RunTimeHistogram]


async def read_totals(connection: AsyncConnection) -> CounterTotals:
    """Every counter summed over its shards."""
    total = func.sum(counters.c.value).label("total")
    query = select(counters.c.name, counters.c.queue, counters.c.label, total).group_by(
        counters.c.name, counters.c.queue, counters.c.label
    )
    rows = await connection.execute(query)
    sums = {(row.name, row.queue, row.label): float(row.total) for row in rows}
    return CounterTotals(events=_events(sums), run_time=_histograms(sums))


_EVENTS = {event.value: event for event in CounterEvent}


def _events(sums: Mapping[CounterKey, float]) -> dict[tuple[CounterEvent, str], int]:
    return {
        (_EVENTS[name], queue): round(value)
        for (name, queue, _), value in sums.items()
        if name in _EVENTS
    }


def _histograms(sums: Mapping[CounterKey, float]) -> dict[str, RunTimeHistogram]:
    buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(RUN_TIME_BUCKETS) + 1))
    totals: dict[str, float] = defaultdict(float)
    observed: dict[str, int] = defaultdict(int)
    for (name, queue, label), value in sums.items():
        if name == RUN_SECONDS_BUCKET:
            buckets[queue][bucket_index(label)] += round(value)
        elif name == RUN_SECONDS_SUM:
            totals[queue] += value
        elif name == RUN_SECONDS_COUNT:
            observed[queue] += round(value)
    return {
        queue: RunTimeHistogram(
            bucket_counts=tuple(buckets[queue]),
            total_seconds=totals[queue],
            count=observed[queue],
        )
        for queue in sorted(buckets.keys() | totals.keys() | observed.keys())
    }
