"""Wake-ups for the database broker: PostgreSQL NOTIFY when jobs become ready.

A notification sent inside a transaction is delivered only when it commits, so a worker is
never woken for a job it cannot see yet, and a rolled-back enqueue wakes nobody.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import CTE, ColumnElement, Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.core.job import JobState

NOTIFY_CHANNEL = "conveyor_jobs"
"""The channel the database broker LISTENs on; each payload is a queue name."""


def returning_with_wake_ups(
    changed: CTE, *also: CTE, columns: Sequence[ColumnElement[Any]] = ()
) -> Select[Any]:
    """PostgreSQL: the rows of `changed` (a data-modifying CTE with `queue` and `state`),
    or `columns` over them (aggregates: one row), notifying once per queue in which it
    left jobs `queued`; `also` runs alongside (a data-modifying CTE runs whether or not it
    is read). The NOTIFYs go out at commit."""
    ready_queues = (
        select(changed.c.queue).where(changed.c.state == JobState.QUEUED.value).distinct()
    ).subquery("ready_queues")
    notified = select(func.pg_notify(NOTIFY_CHANNEL, ready_queues.c.queue)).cte("notified")
    # A plain CTE runs only when read: this scalar subquery reads it, once.
    wake = select(func.count()).select_from(notified).scalar_subquery().label("notified")
    if columns:
        return select(*columns, wake).select_from(changed).add_cte(*also)
    return select(changed, wake).add_cte(*also)


_NOTIFY = text("SELECT pg_notify(:channel, queue) FROM unnest(CAST(:queues AS text[])) AS queue")


async def notify_ready(connection: AsyncConnection, queues: Iterable[str]) -> None:
    """Announce, once per queue, that `queues` have ready jobs (PostgreSQL only)."""
    if connection.dialect.name != "postgresql":
        return
    distinct = sorted(set(queues))
    if distinct:
        await connection.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "queues": distinct})
