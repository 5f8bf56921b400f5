"""`Signals` over Redis pub/sub: a cancel reaches the worker at once, progress reaches the
event streams that follow the job.

Channels (under the deployment's key prefix, `conveyor:` by default, so that deployments
sharing a Redis never hear each other):

    {prefix}cancel              every cancel notice: {"job_id": "…", "attempt": 2}
    {prefix}progress:{job_id}   that job's progress: {"job_id": "…", "attempt": 2,
                                "percent": 40.0, "message": "rendering"}

Payloads are JSON. A payload that does not parse is ignored (logged at DEBUG): pub/sub is
open to anyone who can reach the Redis, and a bad notice must not stop the listener.

Everything here is best effort, because every notice is also in the store (the heartbeat
sees `cancel_requested`, `watch` polls): publishing never raises, and while Redis does
not answer it is not called at all until a backoff with jitter has passed. Listening goes
through one shared subscriber connection per process (`redis_subscriber.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import orjson

from conveyor.brokers.redis_clients import (
    COMMAND_TIMEOUT_SECONDS,
    DEFAULT_PREFIX,
    UNREACHABLE,
    address_of,
    fail_fast_client,
)
from conveyor.brokers.redis_subscriber import Mailbox, Subscriber
from conveyor.core.job import Progress
from conveyor.outages import Breaker, Outage
from conveyor.ports import CancelNotice, ProgressNotice

log = logging.getLogger(__name__)

N = TypeVar("N")

CANCEL_BACKLOG = 1000
"""Cancel notices a listener may fall behind by before the oldest are dropped (the
heartbeat still delivers those)."""
PROGRESS_BACKLOG = 100
"""The same for one job's progress: only the latest matters to a follower."""


class RedisSignals:
    """The `Signals` of a deployment whose broker is Redis."""

    def __init__(self, *, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self._prefix = prefix
        self._client = fail_fast_client(
            url, decode_responses=False, client_name=f"conveyor:{prefix}signals"
        )
        address = address_of(self._client)
        self._subscriber = Subscriber(self._client, address=address)
        self._breaker = Breaker(
            Outage(
                log,
                f"Redis at {address}",
                meanwhile="notices are not published (the store carries the news later)",
                back="publishing notices again",
                back_level=logging.INFO,
            )
        )
        self._closed = False

    # Channels ------------------------------------------------------------------------
    @property
    def cancel_channel(self) -> str:
        return f"{self._prefix}cancel"

    def progress_channel(self, job_id: str) -> str:
        return f"{self._prefix}progress:{job_id}"

    # Publishing ----------------------------------------------------------------------
    async def publish_cancel(self, notice: CancelNotice) -> None:
        payload = {"job_id": notice.job_id, "attempt": notice.attempt}
        await self._publish([(self.cancel_channel, orjson.dumps(payload))])

    async def publish_progress(self, notices: Sequence[ProgressNotice]) -> None:
        await self._publish(
            [
                (self.progress_channel(notice.job_id), _progress_payload(notice))
                for notice in notices
            ]
        )

    async def _publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """PUBLISH each message in one round trip; a failure starts (or extends) a backoff."""
        if not messages or self._closed or self._breaker.closed_for_now:
            return
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                pipeline = self._client.pipeline(transaction=False)
                for channel, payload in messages:
                    pipeline.publish(channel, payload)
                await pipeline.execute()
        except UNREACHABLE as error:
            self._breaker.failed(error)
            return
        self._breaker.succeeded()

    # Listening -----------------------------------------------------------------------
    @asynccontextmanager
    async def cancellations(self) -> AsyncIterator[AsyncIterator[CancelNotice]]:
        channel = self.cancel_channel
        async with self._subscriber.listening(channel, capacity=CANCEL_BACKLOG) as mailbox:
            yield Notices(mailbox, _cancel_notice)

    @asynccontextmanager
    async def follow_progress(self, job_id: str) -> AsyncIterator[AsyncIterator[ProgressNotice]]:
        def of_this_job(payload: bytes) -> ProgressNotice | None:
            notice = _progress_notice(payload)
            return notice if notice is not None and notice.job_id == job_id else None

        channel = self.progress_channel(job_id)
        async with self._subscriber.listening(channel, capacity=PROGRESS_BACKLOG) as mailbox:
            yield Notices(mailbox, of_this_job)

    async def close(self) -> None:
        """End every listener's iterator, stop the subscriber, close the connections."""
        if self._closed:
            return
        self._closed = True
        await self._subscriber.close()
        await self._client.aclose()


class Notices(Generic[N]):
    """The notices in a mailbox, decoded; malformed ones are skipped."""

    def __init__(self, mailbox: Mailbox, decode: Callable[[bytes], N | None]) -> None:
        self._mailbox = mailbox
        self._decode = decode

    def __aiter__(self) -> Notices[N]:
        return self

    async def __anext__(self) -> N:
        while (payload := await self._mailbox.next()) is not None:
            notice = self._decode(payload)
            if notice is not None:
                return notice
        raise StopAsyncIteration


# Payloads ------------------------------------------------------------------------------
def _progress_payload(notice: ProgressNotice) -> bytes:
    progress = notice.progress
    return orjson.dumps(
        {
            "job_id": notice.job_id,
            "attempt": notice.attempt,
            "percent": progress.percent,
            "message": progress.message,
        }
    )


def _cancel_notice(payload: bytes) -> CancelNotice | None:
    fields = _fields(payload)
    if fields is None:
        return None
    return CancelNotice(job_id=fields["job_id"], attempt=fields["attempt"])


def _progress_notice(payload: bytes) -> ProgressNotice | None:
    fields = _fields(payload)
    if fields is None:
        return None
    percent, message = fields.get("percent"), fields.get("message")
    if (
        isinstance(percent, bool)
        or not isinstance(percent, int | float)
        or not 0 <= percent <= 100
        or not (message is None or isinstance(message, str))
    ):
        _ignore(payload)
        return None
    progress = Progress(float(percent), message)
    return ProgressNotice(job_id=fields["job_id"], attempt=fields["attempt"], progress=progress)


def _fields(payload: bytes) -> dict[str, Any] | None:
    """The notice's fields, with a string `job_id` and an integer `attempt`; else None."""
    try:
        fields = orjson.loads(payload)
    except orjson.JSONDecodeError:
        _ignore(payload)
        return None
    if (
        not isinstance(fields, dict)
        or not isinstance(fields.get("job_id"), str)
        or isinstance(fields.get("attempt"), bool)
        or not isinstance(fields.get("attempt"), int)
    ):
        _ignore(payload)
        return None
    return fields


def _ignore(payload: bytes) -> None:
    log.debug("ignoring a malformed notice: %r", payload[:200])
