"""One Redis pub/sub connection per process, shared by everyone who listens.

Each listener (a worker's cancel consumer, an event stream following one job) gets a
`Mailbox` for one channel. The `Subscriber` keeps its single connection subscribed to
exactly the channels that have mailboxes: SUBSCRIBE when the first one opens, UNSUBSCRIBE
when the last one closes. One task reads the connection and hands each message to the
mailboxes of its channel, so a thousand event streams cost one connection, not a thousand.

When the connection fails, the subscriber reconnects with backoff and jitter and subscribes
again to every channel still wanted; messages published meanwhile are lost, which costs
latency only (whoever listens also reads the store). An idle connection is probed with
PING, so one that died without a word (a half-open TCP connection) is noticed within two
probe intervals rather than never.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from conveyor.brokers.redis_clients import (
    COMMAND_TIMEOUT_SECONDS,
    CONNECT_TIMEOUT_SECONDS,
    UNREACHABLE,
)
from conveyor.outages import Backoff, Outage

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 5.0
"""After this long without a word from Redis, PING it; after twice this, reconnect."""

SUBSCRIBE_WAIT_SECONDS = CONNECT_TIMEOUT_SECONDS + 1.0
"""How long opening a listener waits for its SUBSCRIBE to be confirmed. Once Redis is known
to be down, nobody waits: the listener is subscribed when Redis is back."""


class Mailbox:
    """One listener's messages of one channel; a slow listener loses the oldest first."""

    def __init__(self, capacity: int) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(capacity)
        self._ended = False

    def deliver(self, payload: bytes) -> None:
        if not self._ended:
            self._put(payload)

    def end(self) -> None:
        """No more messages: `next()` answers None once the ones delivered are read."""
        if not self._ended:
            self._ended = True
            self._put(None)

    async def next(self) -> bytes | None:
        """The next message, or None once the mailbox has ended."""
        if self._ended and self._queue.empty():
            return None
        return await self._queue.get()

    def _put(self, item: bytes | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()  # notices are superseded by newer ones: drop the oldest
        self._queue.put_nowait(item)


class Subscriber:
    """The shared subscription: `listening(channel)` for as long as a listener needs it."""

    def __init__(self, client: Redis, *, address: str) -> None:
        self._client = client
        self._mailboxes: dict[str, set[Mailbox]] = {}
        # The connection's side: channels SUBSCRIBE was sent for, how many of those sends
        # Redis has not confirmed yet, and which channels are confirmed (and still wanted).
        self._requested: set[str] = set()
        self._unconfirmed: Counter[str] = Counter()
        self._subscribed: set[str] = set()
        self._wanted_changed = asyncio.Event()
        self._news = asyncio.Event()  # replaced each time it fires: wakes every waiter once
        self._sending = asyncio.Lock()
        self._outage = Outage(
            log,
            f"Redis pub/sub at {address}",
            meanwhile="notices are missed and the store is relied on",
            back="listening again",
            back_level=logging.INFO,
        )
        self._backoff = Backoff()
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    @asynccontextmanager
    async def listening(self, channel: str, *, capacity: int) -> AsyncIterator[Mailbox]:
        """A mailbox for `channel`, subscribed when this returns (unless Redis is down)."""
        mailbox = Mailbox(capacity)
        if self._closing.is_set():
            mailbox.end()
            yield mailbox
            return
        self._mailboxes.setdefault(channel, set()).add(mailbox)
        self._wanted_changed.set()
        self._start()
        try:
            await self._until_subscribed(channel)
            yield mailbox
        finally:
            self._forget(channel, mailbox)

    async def close(self) -> None:
        """End every mailbox and stop the reader; the connection is closed."""
        if self._closing.is_set():
            return
        self._closing.set()
        for mailboxes in self._mailboxes.values():
            for mailbox in mailboxes:
                mailbox.end()
        self._announce()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # Listeners -------------------------------------------------------------------------
    def _forget(self, channel: str, mailbox: Mailbox) -> None:
        mailboxes = self._mailboxes.get(channel)
        if mailboxes is None:
            return
        mailboxes.discard(mailbox)
        if not mailboxes:
            del self._mailboxes[channel]
            self._wanted_changed.set()

    async def _until_subscribed(self, channel: str) -> None:
        try:
            async with asyncio.timeout(SUBSCRIBE_WAIT_SECONDS):
                while not self._settled(channel):
                    await self._news.wait()
        except TimeoutError:
            log.debug("listening on %s before Redis confirmed the subscription", channel)

    def _settled(self, channel: str) -> bool:
        return channel in self._subscribed or self._outage.ongoing or self._closing.is_set()

    def _announce(self) -> None:
        self._news.set()
        self._news = asyncio.Event()

    # The connection --------------------------------------------------------------------
    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="conveyor-redis-subscriber")

    async def _run(self) -> None:
        while not self._closing.is_set():
            try:
                await self._serve()
            except UNREACHABLE as error:
                self._outage.failed(error)
            except Exception:  # the reader must outlive any surprise: log, back off, go on
                log.exception("listening for notices on Redis failed; reconnecting")
            self._disconnected()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._backoff.next_delay()):
                    await self._closing.wait()

    async def _serve(self) -> None:
        pubsub = self._client.pubsub()
        try:
            await self._send(pubsub, "PING")  # connects: the reader needs a connection
            reading = asyncio.create_task(self._read(pubsub))
            subscribing = asyncio.create_task(self._keep_subscribed(pubsub))
            await _until_one_fails(reading, subscribing)
        finally:
            await _close_quietly(pubsub)

    def _disconnected(self) -> None:
        self._requested.clear()
        self._unconfirmed.clear()
        self._subscribed.clear()
        self._announce()

    async def _keep_subscribed(self, pubsub: PubSub) -> None:
        """Make the connection's subscriptions follow the channels that have mailboxes."""
        while True:
            self._wanted_changed.clear()
            wanted = set(self._mailboxes)
            added = sorted(wanted - self._requested)
            dropped = sorted(self._requested - wanted)
            if added:
                self._requested.update(added)
                self._unconfirmed.update(added)
                await self._send(pubsub, "SUBSCRIBE", *added)
            if dropped:
                self._requested.difference_update(dropped)
                self._subscribed.difference_update(dropped)
                await self._send(pubsub, "UNSUBSCRIBE", *dropped)
            await self._wanted_changed.wait()

    async def _read(self, pubsub: PubSub) -> None:
        probing = False
        while True:
            reply = await pubsub.parse_response(block=False, timeout=PROBE_INTERVAL_SECONDS)
            if reply is None:
                if probing:
                    raise ConnectionError(f"no reply to PING in {PROBE_INTERVAL_SECONDS} s")
                await self._send(pubsub, "PING")
                probing = True
                continue
            probing = False
            self._heard_from_redis()
            self._dispatch(reply)

    async def _send(self, pubsub: PubSub, *command: str) -> None:
        # One writer at a time, so that commands reach Redis in the order they were decided.
        async with self._sending, asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
            await pubsub.execute_command(*command)

    def _heard_from_redis(self) -> None:
        if self._backoff.failures or self._outage.ongoing:
            self._outage.recovered()
            self._backoff.reset()

    def _dispatch(self, reply: object) -> None:
        if not isinstance(reply, list) or len(reply) != 3:
            return  # the answer to a PING
        kind, channel_name, payload = reply
        channel = channel_name.decode() if isinstance(channel_name, bytes) else str(channel_name)
        if kind == b"message" and isinstance(payload, bytes):
            for mailbox in tuple(self._mailboxes.get(channel, ())):
                mailbox.deliver(payload)
        elif kind == b"subscribe":
            self._confirmed(channel)

    def _confirmed(self, channel: str) -> None:
        # Redis confirms each SUBSCRIBE sent, in order: only the last one sent counts, since
        # an UNSUBSCRIBE may have come between an earlier one and now.
        self._unconfirmed[channel] -= 1
        if self._unconfirmed[channel] > 0:
            return
        del self._unconfirmed[channel]
        if channel in self._requested:
            self._subscribed.add(channel)
            self._announce()


async def _until_one_fails(*tasks: asyncio.Task[None]) -> None:
    """Wait for the first of `tasks` to end, stop the others, and raise what ended it."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()


async def _close_quietly(pubsub: PubSub) -> None:
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # untyped in older redis-py
    except Exception:  # closing a connection to a Redis that is gone may fail
        log.debug("closing the pub/sub connection failed", exc_info=True)
