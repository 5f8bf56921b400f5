"""Wake-ups for the database broker: PostgreSQL NOTIFY when jobs become ready.

A notification sent inside a transaction is delivered only when it commits, so a worker is
never woken for a job it cannot see yet, and a rolled-back enqueue wakes nobody.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, func, text
from sqlalchemy.ext.asyncio import AsyncConnection

NOTIFY_CHANNEL = "conveyor_jobs"
"""The channel the database broker LISTENs on; each payload is a queue name."""


def notify_each(queues: ColumnElement[str]) -> ColumnElement[str]:
    """A select-list expression that notifies, for each row, that its queue has ready jobs."""
    return func.pg_notify(NOTIFY_CHANNEL, queues)


_NOTIFY = text("SELECT pg_notify(:channel, queue) FROM unnest(CAST(:queues AS text[])) AS queue")


async def notify_ready(connection: AsyncConnection, queues: Iterable[str]) -> None:
    """Announce, once per queue, that `queues` have ready jobs (PostgreSQL only)."""
    if connection.dialect.name != "postgresql":
        return
    distinct = sorted(set(queues))
    if distinct:
        await connection.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "queues": distinct})
