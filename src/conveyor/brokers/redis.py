"""The Redis broker: job ids in Redis sorted sets, and the job store deciding who holds a job.

Keys (all under the deployment's prefix, `conveyor:` by default):

    {prefix}queues          a set: the name of every queue a job was announced on
    {prefix}queue:{name}    a sorted set of the ready job ids of one queue

An id is scored `-priority`, so the lowest score (the highest priority) pops first; ids of
equal score pop in lexicographic order, which for UUIDv7 ids is creation order (FIFO).

Redis only ever holds ids. A popped id is claimed in the store with a conditional update
(`claim_ids`: the job must still be `queued`), so an id that is stale (its job gone,
finished or claimed by someone else) is simply dropped, and an id added twice is harmless.
Redis is an accelerator, never a single point of failure: while it does not answer,
announcements are skipped (the job is already committed) and workers claim from the store
directly, trying Redis again after a backoff with jitter. Jobs Redis does not hold (missed
meanwhile, or made `queued` inside the store: promoted, rescued, released) are handed out by
the store when Redis runs dry, until the monitor's reconciler publishes them (issue 4,
part 2; see docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from conveyor.brokers.redis_popping import POP_BEST, Popped, PoppedIds, pop_arguments
from conveyor.core.errors import StoreUnavailable
from conveyor.core.job import Job, JobState
from conveyor.outages import Backoff, Outage
from conveyor.ports import Claim
from conveyor.store.sql import SqlJobStore

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PREFIX = "conveyor:"
WAIT_JITTER = 0.2
"""Each wait lasts between 80% and 100% of its bound, as with the database broker."""

COMMAND_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 2.0
PAUSED_CACHE_SECONDS = 1.0
"""How long the store's list of paused queues is trusted: a pause takes effect within it."""

CLOSE_WAIT_SECONDS = 1.0
"""How long `close` lets pops still in flight finish, so their ids can be put back."""

MIN_BLOCK_SECONDS = 0.01
"""Redis reads a blocking timeout of 0 as "forever": shorter waits just return."""

_UNREACHABLE = (RedisError, OSError, TimeoutError)


class RedisUnreachable(Exception):
    """Redis did not answer (or is in its backoff after failing): use the store instead."""


class RedisBroker:
    """The `Broker` for PostgreSQL (or SQLite) as the store and Redis as the queue."""

    def __init__(
        self,
        store: SqlJobStore,
        *,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        poll_interval: float,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0 seconds")
        self._store = store
        self._prefix = prefix
        self._poll_interval = poll_interval
        # No retries inside the client: a failure must reach us at once, so that claims fall
        # back to the store; reconnecting is paced by our own backoff.
        self._client: Redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=None,  # every command has an asyncio deadline instead
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        self._pop_best = self._client.register_script(POP_BEST)
        self._address = _address_of(self._client)
        self._outage = Outage(
            log,
            f"Redis at {self._address}",
            meanwhile="using the job store until it returns",
            back="restored",
            back_level=logging.INFO,
        )
        self._backoff = Backoff()
        self._retry_at = 0.0
        self._popped = PoppedIds()
        self._in_flight: set[asyncio.Task[list[Popped]]] = set()
        self._paused: frozenset[str] = frozenset()
        self._paused_read_at: float | None = None
        self._policy_checked = False
        self._closed = False

    # Keys ----------------------------------------------------------------------------
    @property
    def queues_key(self) -> str:
        return f"{self._prefix}queues"

    def queue_key(self, queue: str) -> str:
        return f"{self._prefix}queue:{queue}"

    # Lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Check Redis's eviction policy; an unreachable Redis delays nothing."""
        if self._closed or self._policy_checked:
            return
        with contextlib.suppress(RedisUnreachable):
            await self._check_eviction_policy()

    async def ping(self) -> None:
        """Raise unless Redis answers now (whatever the backoff says): for readiness checks."""
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                await self._client.ping()
        except _UNREACHABLE as error:
            raise ConnectionError(f"Redis at {self._address} does not answer: {error}") from None

    async def close(self) -> None:
        """Put back the ids popped but never claimed, then close the connections."""
        if self._closed:
            return
        self._closed = True
        if self._in_flight:
            _, late = await asyncio.wait(set(self._in_flight), timeout=CLOSE_WAIT_SECONDS)
            for task in late:  # its id, if any, is republished by the reconciler
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._put_back(self._popped.take_all())
        await self._client.aclose()

    # Publishing ------------------------------------------------------------------------
    async def announce(self, jobs: Sequence[Job]) -> None:
        """Add the ids of ready jobs (one round trip); never fails the caller."""
        ready = [job for job in jobs if job.state is JobState.QUEUED]
        if not ready or self._closed:
            return
        with contextlib.suppress(RedisUnreachable):
            await self._call(lambda: self._publish([Popped.of(job) for job in ready]))

    async def _publish(self, entries: Sequence[Popped]) -> None:
        by_queue: dict[str, dict[str, float]] = defaultdict(dict)
        for entry in entries:
            by_queue[entry.queue][entry.job_id] = entry.score
        pipeline = self._client.pipeline(transaction=False)
        pipeline.sadd(self.queues_key, *by_queue)
        for queue, scores in by_queue.items():
            # NX: an id already there keeps its place; adding it again changes nothing.
            pipeline.zadd(self.queue_key(queue), scores, nx=True)
        await pipeline.execute()

    async def _put_back(self, entries: Sequence[Popped]) -> None:
        if not entries:
            return
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                await self._publish(entries)
        except _UNREACHABLE as error:
            log.warning(
                "could not put %d popped job ids back into Redis (the reconciler will): %s",
                len(entries),
                error,
            )

    # Claiming --------------------------------------------------------------------------
    async def claim(
        self, *, worker_id: str, queues: Collection[str], limit: int, lease_seconds: float
    ) -> list[Claim]:
        if limit <= 0:
            return []
        wanted = frozenset(queues)
        popped = self._popped.take(wanted, limit)
        try:
            if len(popped) < limit:
                popped += await self._pop(wanted, limit - len(popped))
        except RedisUnreachable:
            self._popped.keep(popped)  # claimed later, when Redis answers again
            return await self._store.claim(
                worker_id=worker_id, queues=queues, limit=limit, lease_seconds=lease_seconds
            )
        except BaseException:  # the store (asked for paused queues) failed, or we stop
            self._popped.keep(popped)
            raise
        claims = await self._claim_popped(worker_id, popped, lease_seconds)
        if len(claims) < limit:
            # Jobs that become `queued` inside the store (promoted, rescued, released, or
            # committed while Redis was away) are not in Redis until the reconciler
            # publishes them (issue 4, part 2). Until then the store hands out what Redis
            # did not, so no job waits on Redis to learn of it.
            claims += await self._store.claim(
                worker_id=worker_id,
                queues=queues,
                limit=limit - len(claims),
                lease_seconds=lease_seconds,
            )
        return claims

    async def _pop(self, wanted: frozenset[str], limit: int) -> list[Popped]:
        paused = await self._paused_queues()
        if wanted and wanted <= paused:
            return []
        arguments = pop_arguments(self.queue_key(""), limit, wanted, paused)
        return await self._call(
            lambda: self._shielded(self._run_pop_best(arguments), COMMAND_TIMEOUT_SECONDS),
            deadline=None,
        )

    async def _run_pop_best(self, arguments: list[str | int]) -> list[Popped]:
        reply = await self._pop_best(keys=[self.queues_key], args=arguments)
        return Popped.from_script(reply)

    async def _claim_popped(
        self, worker_id: str, popped: list[Popped], lease_seconds: float
    ) -> list[Claim]:
        if not popped:
            return []
        try:
            claims = await self._store.claim_ids(
                worker_id=worker_id,
                job_ids=[entry.job_id for entry in popped],
                lease_seconds=lease_seconds,
            )
        except BaseException:
            self._popped.keep(popped)  # the store did not answer: these are still to claim
            raise
        if len(claims) < len(popped):
            # Stale ids are dropped. One of a queue paused since we last looked would be
            # dropped too (the reconciler republishes it): look at the pauses again now.
            self._paused_read_at = None
        return claims

    async def _paused_queues(self) -> frozenset[str]:
        read_at = self._paused_read_at
        if read_at is None or time.monotonic() - read_at > PAUSED_CACHE_SECONDS:
            self._paused = await self._store.paused_queues()
            self._paused_read_at = time.monotonic()
        return self._paused

    # Waiting ---------------------------------------------------------------------------
    async def wait_for_work(self, queues: Collection[str], timeout: float) -> None:
        """Block on Redis until an id arrives in `queues`; keep it for the next claim."""
        bound = min(timeout, self._poll_interval) * random.uniform(1 - WAIT_JITTER, 1)
        wanted = frozenset(queues)
        if bound < MIN_BLOCK_SECONDS or self._popped.has(wanted) or self._closed:
            return
        try:
            keys = await self._waitable_keys(wanted)
            if keys:
                deadline = bound + COMMAND_TIMEOUT_SECONDS
                popped = await self._call(
                    lambda: self._shielded(self._block_pop(keys, bound), deadline), deadline=None
                )
                self._popped.keep(popped)
                return
        except (RedisUnreachable, StoreUnavailable) as error:
            log.debug("waiting by sleeping: %s", error)
        await asyncio.sleep(bound)

    async def _waitable_keys(self, wanted: frozenset[str]) -> list[str]:
        paused = await self._paused_queues()
        names = wanted or {str(name) for name in await self._call(self._known_queues)}
        return [self.queue_key(name) for name in sorted(names - paused)]

    async def _known_queues(self) -> set[bytes | str]:
        return await self._client.smembers(self.queues_key)

    async def _block_pop(self, keys: list[str], bound: float) -> list[Popped]:
        reply = await self._client.bzpopmin(keys, timeout=bound)
        if reply is None:
            return []
        key, job_id, score = (str(item) for item in reply)
        queue = key.removeprefix(self.queue_key(""))
        return [Popped(queue=queue, job_id=job_id, score=float(score))]

    async def _shielded(self, pop: Awaitable[list[Popped]], deadline: float) -> list[Popped]:
        """Run a pop to its end even if our caller is cancelled: Redis has removed the ids
        by then, so they are kept for the next claim (or put back at close), never lost."""
        task = asyncio.ensure_future(_within(deadline, pop))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._keep_late_result)
            raise

    def _keep_late_result(self, task: asyncio.Task[list[Popped]]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._popped.keep(task.result())

    # Reaching Redis --------------------------------------------------------------------
    async def _call(
        self,
        command: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = COMMAND_TIMEOUT_SECONDS,
    ) -> T:
        """Run a command unless Redis is in its backoff; any failure starts (or extends) it.

        Raises RedisUnreachable either way, so that the caller falls back to the store.
        `deadline` None: the command has its own (pops run in a task of their own).
        """
        if time.monotonic() < self._retry_at:
            raise RedisUnreachable(f"Redis at {self._address} is backing off")
        try:
            async with asyncio.timeout(deadline):
                result = await command()
        except _UNREACHABLE as error:
            self._outage.failed(error)
            self._retry_at = time.monotonic() + self._backoff.next_delay()
            raise RedisUnreachable(str(error)) from error
        if self._backoff.failures or self._outage.ongoing:
            self._outage.recovered()
            self._backoff.reset()
        if not self._policy_checked:
            with contextlib.suppress(RedisUnreachable):
                await self._check_eviction_policy()
        return result

    async def _check_eviction_policy(self) -> None:
        self._policy_checked = True
        try:
            policy = await self._call(self._eviction_policy)
        except RedisUnreachable:
            self._policy_checked = False  # look again once Redis answers
            raise
        if policy is None:
            log.info("could not read Redis's maxmemory-policy (CONFIG is not allowed)")
        elif policy != "noeviction":
            log.warning(
                "Redis at %s has maxmemory-policy %r: under memory pressure it may evict "
                "queued job ids, which then wait for the reconciler to republish them. "
                "Set maxmemory-policy to noeviction.",
                self._address,
                policy,
            )

    async def _eviction_policy(self) -> str | None:
        try:
            reply: dict[Any, Any] = await self._client.config_get("maxmemory-policy")
        except ResponseError:  # CONFIG renamed or forbidden (some managed services)
            return None
        policy = reply.get("maxmemory-policy")
        return str(policy) if policy is not None else None


async def _within(seconds: float, work: Awaitable[T]) -> T:
    async with asyncio.timeout(seconds):
        return await work


def _address_of(client: Redis) -> str:
    """host:port/db, never the password: it appears in logs and health checks."""
    options = client.connection_pool.connection_kwargs
    if "path" in options:
        return f"unix:{options['path']}"
    return f"{options.get('host', 'localhost')}:{options.get('port', 6379)}/{options.get('db', 0)}"
