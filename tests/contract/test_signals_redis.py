"""RedisSignals on a real Redis: cancel and progress notices between processes.

Each test's signals use the test's own key prefix, so its channels are its own. A second
RedisSignals plays the other process (the API publishing a cancel, a worker publishing
progress); listeners are named through the URL so a test can find their connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis

from conveyor.brokers.redis_signals import RedisSignals
from conveyor.core.job import Progress
from conveyor.ports import CancelNotice, ProgressNotice
from tests.backends import free_port
from tests.waiting import eventually

WAIT = 10.0

N = TypeVar("N")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client, for looking at the server from outside."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def open_signals(
    redis_url: str, redis_prefix: str
) -> AsyncIterator[Callable[..., RedisSignals]]:
    """Opens RedisSignals (named `name` on the server), all closed after the test."""
    opened: list[RedisSignals] = []

    def open_one(*, name: str | None = None, prefix: str = redis_prefix) -> RedisSignals:
        url = f"{redis_url}?client_name={name}" if name else redis_url
        signals = RedisSignals(url=url, prefix=prefix)
        opened.append(signals)
        return signals

    yield open_one
    for signals in opened:
        await signals.close()


async def next_of(notices: AsyncIterator[N]) -> N:
    async with asyncio.timeout(WAIT):
        return await anext(notices)


def progress(job_id: str, percent: float, attempt: int = 1) -> ProgressNotice:
    return ProgressNotice(job_id, attempt, Progress(percent, f"at {percent}"))


def client_name() -> str:
    return f"conveyor-test-{secrets.token_hex(4)}"


async def connections_named(redis: Redis, name: str) -> list[dict[str, Any]]:
    return [client for client in await redis.client_list() if client.get("name") == name]


async def subscribers(redis: Redis, channel: str) -> int:
    [(_, count)] = await redis.pubsub_numsub(channel)
    return int(count)


async def test_a_cancel_notice_reaches_a_listener_in_another_process(
    open_signals: Callable[..., RedisSignals],
) -> None:
    worker_side, api_side = open_signals(), open_signals()

    async with worker_side.cancellations() as notices:
        await api_side.publish_cancel(CancelNotice("job-1", 2))

        assert await next_of(notices) == CancelNotice("job-1", 2)


async def test_progress_reaches_the_followers_of_its_job_and_no_one_else(
    open_signals: Callable[..., RedisSignals],
) -> None:
    api_side, worker_side = open_signals(), open_signals()

    async with (
        api_side.follow_progress("job-a") as first,
        api_side.follow_progress("job-a") as second,
        api_side.follow_progress("job-b") as other,
    ):
        await worker_side.publish_progress([progress("job-a", 10), progress("job-b", 20)])
        await worker_side.publish_progress([progress("job-a", 30)])

        # Notices arrive in the order published: had job-b's follower been handed job-a's
        # notice, it would come before its own, and job-a's followers would see job-b's.
        assert await next_of(other) == progress("job-b", 20)
        for follower in (first, second):
            assert await next_of(follower) == progress("job-a", 10)
            assert await next_of(follower) == progress("job-a", 30)


async def test_a_follower_is_subscribed_once_it_has_entered(
    open_signals: Callable[..., RedisSignals], redis: Redis
) -> None:
    api_side, worker_side = open_signals(), open_signals()
    channel = api_side.progress_channel("job-1")

    async with api_side.follow_progress("job-1") as notices:
        assert await subscribers(redis, channel) == 1  # no wait: subscribed on entering
        await worker_side.publish_progress([progress("job-1", 50)])  # published once

        assert await next_of(notices) == progress("job-1", 50)

    async def unsubscribed() -> bool:
        return await subscribers(redis, channel) == 0

    await eventually(unsubscribed, timeout=WAIT, message=f"{channel} to be unsubscribed")


async def test_every_listener_of_a_process_shares_one_connection(
    open_signals: Callable[..., RedisSignals], redis: Redis
) -> None:
    name = client_name()
    signals = open_signals(name=name)

    async with contextlib.AsyncExitStack() as listeners:
        await listeners.enter_async_context(signals.cancellations())
        for number in range(20):
            await listeners.enter_async_context(signals.follow_progress(f"job-{number}"))
        connections = await connections_named(redis, name)

    # One connection holds the 21 subscriptions (any other would be a publishing one).
    assert sorted(int(connection["sub"]) for connection in connections)[-1:] == [21]
    assert sum(int(connection["sub"]) > 0 for connection in connections) == 1


async def test_a_listener_hears_again_after_its_connection_is_killed(
    open_signals: Callable[..., RedisSignals], redis: Redis
) -> None:
    name = client_name()
    worker_side, api_side = open_signals(name=name), open_signals()

    async with worker_side.cancellations() as notices:
        for connection in await connections_named(redis, name):
            await redis.client_kill_filter(_id=connection["id"])

        # Notices published before it has subscribed again are lost: publish until heard.
        async def heard() -> CancelNotice | None:
            await api_side.publish_cancel(CancelNotice("job-1", 1))
            try:
                async with asyncio.timeout(0.1):
                    return await anext(notices)
            except TimeoutError:
                return None

        assert await eventually(heard, timeout=WAIT, message="a notice after the kill")


async def test_publishing_to_an_unreachable_redis_returns_without_raising(
    redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    signals = RedisSignals(url=f"redis://127.0.0.1:{free_port()}/0", prefix=redis_prefix)
    try:
        with caplog.at_level(logging.DEBUG, logger="conveyor.brokers"):
            async with asyncio.timeout(WAIT):
                for _ in range(3):
                    await signals.publish_cancel(CancelNotice("job-1", 1))
                    await signals.publish_progress([progress("job-1", 5)])
                async with signals.follow_progress("job-1"):
                    pass  # entered although nothing can subscribe
    finally:
        await signals.close()

    warnings = [
        record
        for record in caplog.records
        if record.levelno >= logging.WARNING and record.name == "conveyor.brokers.redis_signals"
    ]
    assert len(warnings) == 1  # one outage, logged once
    assert "unavailable" in warnings[0].getMessage()


async def test_closing_ends_every_listener(open_signals: Callable[..., RedisSignals]) -> None:
    signals = open_signals()

    async with signals.cancellations() as cancels, signals.follow_progress("job-1") as followed:
        waiting = asyncio.ensure_future(anext(cancels))
        await signals.close()

        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, WAIT)
        with pytest.raises(StopAsyncIteration):
            await next_of(followed)


async def test_deployments_with_other_prefixes_never_hear_each_other(
    open_signals: Callable[..., RedisSignals], redis_prefix: str
) -> None:
    other_prefix = f"{redis_prefix}other:"
    ours, theirs = open_signals(), open_signals(prefix=other_prefix)
    our_publisher, their_publisher = open_signals(), open_signals(prefix=other_prefix)

    async with ours.cancellations() as our_cancels, theirs.cancellations() as their_cancels:
        await their_publisher.publish_cancel(CancelNotice("theirs", 1))
        await our_publisher.publish_cancel(CancelNotice("ours", 1))

        # Ours was published after theirs: had theirs reached us, it would come first.
        assert await next_of(our_cancels) == CancelNotice("ours", 1)
        assert await next_of(their_cancels) == CancelNotice("theirs", 1)


async def test_a_malformed_notice_is_skipped(
    open_signals: Callable[..., RedisSignals], redis: Redis
) -> None:
    signals = open_signals()

    async with signals.cancellations() as notices:
        for garbage in (b"not json", b"[1, 2]", b'{"job_id": 7, "attempt": 1}'):
            await redis.publish(signals.cancel_channel, garbage)
        await redis.publish(signals.cancel_channel, b'{"job_id": "job-1", "attempt": 3}')

        assert await next_of(notices) == CancelNotice("job-1", 3)
