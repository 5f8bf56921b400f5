"""The Redis broker: job ids in Redis sorted sets, and the job store deciding who holds a job.

Keys (all under the deployment's prefix, `conveyor:` by default; see RedisKeys):

    {prefix}queues          a set: the name of every queue a job was announced on
    {prefix}queue:{name}    a sorted set of the ready job ids of one queue
    {prefix}epoch           present while Redis is known to hold every ready id
    {prefix}sweep           the reconciler's refill in progress

An id is scored `-priority`, so the lowest score (the highest priority) pops first; ids of
equal score pop in lexicographic order, which for UUIDv7 ids is creation order (FIFO).

Redis only ever holds ids. A popped id is claimed in the store with a conditional update
(`claim_ids`: the job must still be `queued`), so an id that is stale (its job gone,
finished or claimed by someone else) is simply dropped, and an id added twice is harmless.
Redis is an accelerator, never a single point of failure: while it does not answer,
announcements are skipped (the job is already committed) and workers claim from the store
directly (see RedisLink). Ids Redis lacks are published again by the reconciler
(redis_reconciling); while Redis is known to lack some (no epoch key), claims that Redis
cannot fill are topped up from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Collection, Sequence
from typing import TypeVar

from conveyor.brokers import faults
from conveyor.brokers.redis_clients import COMMAND_TIMEOUT_SECONDS, DEFAULT_PREFIX, UNREACHABLE
from conveyor.brokers.redis_link import RedisKeys, RedisLink, RedisUnreachable
from conveyor.brokers.redis_popping import POP_BEST, Popped, PoppedIds, pop_arguments
from conveyor.brokers.redis_reconciling import GRACE_SECONDS, Reconciler
from conveyor.core.errors import StoreUnavailable
from conveyor.ports import Claim, ReadyJob, Reconciliation
from conveyor.store.sql import SqlJobStore

__all__ = ["DEFAULT_PREFIX", "RedisBroker", "RedisUnreachable"]

log = logging.getLogger(__name__)

T = TypeVar("T")

WAIT_JITTER = 0.2
"""Each wait lasts between 80% and 100% of its bound, as with the database broker."""

PAUSED_CACHE_SECONDS = 1.0
"""How long the store's list of paused queues is trusted: a pause takes effect within it."""

CLOSE_WAIT_SECONDS = 1.0
"""How long `close` lets pops still in flight finish, so their ids can be put back."""

MIN_BLOCK_SECONDS = 0.01
"""Redis reads a blocking timeout of 0 as "forever": shorter waits just return."""


class RedisBroker:
    """The `Broker` for PostgreSQL (or SQLite) as the store and Redis as the queue."""

    def __init__(
        self,
        store: SqlJobStore,
        *,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        poll_interval: float,
        reconcile_grace_seconds: float = GRACE_SECONDS,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0 seconds")
        self._store = store
        self._poll_interval = poll_interval
        self.keys = RedisKeys(prefix)
        self._link = RedisLink(url, self.keys)
        self._pop_best = self._link.client.register_script(POP_BEST)
        self._reconciler = Reconciler(
            store, self._link, self._publish, grace_seconds=reconcile_grace_seconds
        )
        self._popped = PoppedIds()
        self._in_flight: set[asyncio.Task[list[Popped]]] = set()
        self._paused: frozenset[str] = frozenset()
        self._paused_read_at: float | None = None
        self._closed = False

    # Lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Check Redis's eviction policy; an unreachable Redis delays nothing."""
        if self._closed or self._link.policy_checked:
            return
        with contextlib.suppress(RedisUnreachable):
            await self._link.check_eviction_policy()

    async def ping(self) -> None:
        await self._link.ping()

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
        await self._link.close()

    # Publishing ------------------------------------------------------------------------
    async def announce(self, ready: Sequence[ReadyJob]) -> None:
        """Add the ids of ready jobs (one round trip); never fails the caller."""
        if not ready or self._closed:
            return
        faults.exit_if_armed(faults.EXIT_BEFORE_PUBLISH)
        with contextlib.suppress(RedisUnreachable):
            await self._link.call(lambda: self._publish(ready))

    async def _publish(self, ready: Sequence[ReadyJob]) -> int:
        by_queue: dict[str, dict[str, float]] = defaultdict(dict)
        for entry in map(Popped.of, ready):
            by_queue[entry.queue][entry.job_id] = entry.score
        pipeline = self._link.client.pipeline(transaction=False)
        pipeline.sadd(self.keys.queues, *by_queue)
        for queue, scores in by_queue.items():
            # NX: an id already there keeps its place; adding it again changes nothing.
            pipeline.zadd(self.keys.queue(queue), scores, nx=True)
        added: list[int] = (await pipeline.execute())[1:]
        return sum(added)

    async def _put_back(self, entries: Sequence[Popped]) -> None:
        if not entries:
            return
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                await self._publish([entry.ready_job() for entry in entries])
        except UNREACHABLE as error:
            self._link.missed()
            log.warning(
                "could not put %d popped job ids back into Redis (the reconciler will): %s",
                len(entries),
                error,
            )

    async def reconcile(self, *, limit: int) -> Reconciliation:
        """One step of the reconciler (redis_reconciling); nothing while Redis is away."""
        if self._closed:
            return Reconciliation()
        try:
            return await self._reconciler.step(limit)
        except RedisUnreachable:
            return Reconciliation()  # claims go to the store meanwhile

    # Claiming --------------------------------------------------------------------------
    async def claim(
        self, *, worker_id: str, queues: Collection[str], limit: int, lease_seconds: float
    ) -> list[Claim]:
        if limit <= 0:
            return []
        wanted = frozenset(queues)
        in_hand = self._popped.take(wanted, limit)
        if not in_hand:
            return await self._pop_and_claim(worker_id, wanted, limit, lease_seconds)
        if len(in_hand) == limit:
            return await self._claim_popped(worker_id, in_hand, lease_seconds)
        # Ids in hand (a wait has just popped one): claim them at once and pop the rest
        # meanwhile, so that a job reaching an idle worker waits for the store's round trip
        # alone, not for a Redis one before it (~0.4 ms of idle latency).
        results = await asyncio.gather(
            self._claim_popped(worker_id, in_hand, lease_seconds),
            self._pop_and_claim(worker_id, wanted, limit - len(in_hand), lease_seconds),
            return_exceptions=True,
        )
        claims = [claim for result in results if isinstance(result, list) for claim in result]
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures and (not claims or not isinstance(failures[0], Exception)):
            raise failures[0]
        if failures:  # what was claimed runs; the worker's next claim meets the fault again
            log.warning(
                "claimed %d jobs, but part of the claim failed: %s", len(claims), failures[0]
            )
        return claims

    async def _pop_and_claim(
        self, worker_id: str, wanted: frozenset[str], limit: int, lease_seconds: float
    ) -> list[Claim]:
        try:
            complete, popped = await self._pop(wanted, limit)
        except RedisUnreachable:
            return await self._store.claim(
                worker_id=worker_id, queues=wanted, limit=limit, lease_seconds=lease_seconds
            )
        claims = await self._claim_popped(worker_id, popped, lease_seconds)
        if len(claims) < limit and not complete:
            # Redis is known to lack ids (restarted empty, or missed some while away) and
            # the reconciler is refilling it: meanwhile the store hands out what Redis did
            # not, so that no job waits for the refill to reach it.
            claims += await self._store.claim(
                worker_id=worker_id,
                queues=wanted,
                limit=limit - len(claims),
                lease_seconds=lease_seconds,
            )
        return claims

    async def _pop(self, wanted: frozenset[str], limit: int) -> tuple[bool, list[Popped]]:
        """Whether Redis holds every ready id, and up to `limit` ids popped from it."""
        paused = await self._paused_queues()
        if wanted and wanted <= paused:
            return True, []
        arguments = pop_arguments(self.keys.queue_prefix, limit, wanted, paused)
        complete = True

        async def pop_best() -> list[Popped]:
            nonlocal complete
            reply = await self._pop_best(keys=[self.keys.queues, self.keys.epoch], args=arguments)
            complete, popped = Popped.from_script(reply)
            return popped

        popped = await self._link.call(
            lambda: self._shielded(pop_best(), COMMAND_TIMEOUT_SECONDS), deadline=None
        )
        if popped:
            faults.exit_if_armed(faults.EXIT_AFTER_POP)
        return complete, popped

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
                popped = await self._link.call(
                    lambda: self._shielded(self._block_pop(keys, bound), deadline), deadline=None
                )
                if popped:
                    faults.exit_if_armed(faults.EXIT_AFTER_POP)
                self._popped.keep(popped)
                return
        except (RedisUnreachable, StoreUnavailable) as error:
            log.debug("waiting by sleeping: %s", error)
        await asyncio.sleep(bound)

    async def _waitable_keys(self, wanted: frozenset[str]) -> list[str]:
        paused = await self._paused_queues()
        names = wanted or {str(name) for name in await self._link.call(self._known_queues)}
        return [self.keys.queue(name) for name in sorted(names - paused)]

    async def _known_queues(self) -> set[bytes | str]:
        return await self._link.client.smembers(self.keys.queues)

    async def _block_pop(self, keys: list[str], bound: float) -> list[Popped]:
        reply = await self._link.client.bzpopmin(keys, timeout=bound)
        if reply is None:
            return []
        key, job_id, score = (str(item) for item in reply)
        queue = key.removeprefix(self.keys.queue_prefix)
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


async def _within(seconds: float, work: Awaitable[T]) -> T:
    async with asyncio.timeout(seconds):
        return await work
