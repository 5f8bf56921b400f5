"""The reconciler: makes Redis hold every job the store has `queued`, whatever it lost.

Redis can lack ready ids: a process died between committing a job and publishing its id, or
between popping an id and claiming the job; a publish was skipped while Redis was
unreachable; Redis restarted empty or evicted keys. The store always knows the truth, so the
monitor's leader walks the ready jobs in claim order, a bounded page per step, and adds
their ids with ZADD NX (an id already there keeps its place; adding it again changes
nothing; an id added for a job claimed meanwhile is dropped at its next claim).

Two modes, told apart by the epoch key:

* **Complete** (`{prefix}epoch` exists): Redis is known to hold every ready id but the few
  lost to crashes or eviction. Every other step reads the head of the claim order (the
  jobs workers take next, so a lost id is found by the time it would be claimed, however
  long the backlog); the others walk the ready jobs round after round, so that an id lost
  in a queue behind others' backlogs is found too. The monitor takes two steps a pass
  (a pass checks two pages, not the whole backlog: a sweep of every ready job each pass
  took a quarter of a draining worker's time with 20 000 jobs queued). An id counts
  as lost only when it is found missing (and its job still `queued`) twice, at least the
  grace apart, and its job became ready longer than the grace ago: a publisher about to
  publish, or a worker between popping ids and claiming them, is never mistaken for a loss.
* **Catching up** (the epoch key is missing: Redis restarted empty, was never filled, or a
  process that could not reach it marked it incomplete): workers claim from the store too
  (see RedisBroker.claim), and the reconciler runs a refill, a round without grace, back to
  back. The refill writes its id to `{prefix}sweep` when it starts; at its end it sets the
  epoch only if that id is still there, since a process marking Redis incomplete deletes it
  and the ids it missed may lie behind the refill's position.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

from conveyor.brokers.redis_link import RedisLink
from conveyor.brokers.redis_popping import Publish
from conveyor.ports import ReadyJob, Reconciliation
from conveyor.store.ready import ReadyPosition
from conveyor.store.sql import SqlJobStore

log = logging.getLogger("conveyor.brokers.redis")

GRACE_SECONDS = 2.0
"""How long a job is ready before a missing id counts as lost: far longer than a publish
after commit, or a claim after a pop, take."""

# Marks Redis complete, unless the refill was invalidated since it began. KEYS: sweep, epoch.
FINISH_REFILL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class Reconciler:
    """The reconciler's position and refill; `step()` is called by RedisBroker.reconcile."""

    def __init__(
        self,
        store: SqlJobStore,
        link: RedisLink,
        publish: Publish,
        *,
        grace_seconds: float = GRACE_SECONDS,
    ) -> None:
        self._store = store
        self._grace = grace_seconds
        self._link = link
        self._publish = publish
        self._finish_refill = link.client.register_script(FINISH_REFILL)
        self._position: ReadyPosition | None = None
        self._refill: str | None = None  # the id of the refill this process runs
        self._missing = MissingIds()
        self._round_started = time.monotonic()
        self._head_next = True

    async def step(self, limit: int) -> Reconciliation:
        """Publish one page of ready jobs; raises RedisUnreachable when Redis is away."""
        keys = self._link.keys
        complete = bool(await self._link.call(lambda: self._link.client.exists(keys.epoch)))
        if complete:
            self._refill = None  # another leader's refill finished it
        elif self._refill is None:
            await self._begin_refill()
        refilling = self._refill is not None
        # Complete: every other step reads the head of the claim order, where a lost id
        # would be missed first, and the others walk on (see the module's docstring).
        from_head = not refilling and self._head_next
        self._head_next = not from_head
        page = await self._store.ready_page(
            after=None if from_head else self._position,
            limit=limit,
            ready_for_seconds=0.0 if refilling else self._grace,
        )
        lost = page.jobs if refilling else await self._lost_among(page.jobs)
        republished = await self._link.call(lambda: self._publish(lost)) if lost else 0
        self._missing.forget([job.id for job in lost])
        if republished and not refilling:
            log.warning(
                "Redis lacked %d ready job ids (lost by a process that died, or evicted); "
                "published them again",
                republished,
            )
        if from_head:
            return Reconciliation(republished=republished, round_done=False)
        self._position = None if page.last else page.end
        if page.last:
            self._missing.forget_unseen_since(self._round_started)
            self._round_started = time.monotonic()
        if page.last and self._refill is not None:
            refilling = not await self._end_refill(self._refill)
        return Reconciliation(republished=republished, round_done=page.last, catching_up=refilling)

    async def _lost_among(self, ready: list[ReadyJob]) -> list[ReadyJob]:
        """The jobs whose ids Redis lost: missing now, and since at least the grace.

        Missing now means absent from Redis while the store still has the job `queued`
        (asked again after Redis, so that jobs claimed since the page was read are left
        out); an id popped by a worker that has not claimed it yet looks just like that.
        """
        if not ready:
            return []
        absent = await self._link.call(lambda: self._absent(ready))
        if not absent:
            return []
        queued = await self._store.queued_among([job.id for job in absent])
        missing = [job for job in absent if job.id in queued]
        return self._missing.missing_for(missing, self._grace)

    async def _absent(self, ready: list[ReadyJob]) -> list[ReadyJob]:
        by_queue: dict[str, list[ReadyJob]] = defaultdict(list)
        for job in ready:
            by_queue[job.queue].append(job)
        pipeline = self._link.client.pipeline(transaction=False)
        for queue, members in by_queue.items():
            pipeline.zmscore(self._link.keys.queue(queue), [job.id for job in members])
        replies = await pipeline.execute()
        return [
            job
            for members, scores in zip(by_queue.values(), replies, strict=True)
            for job, score in zip(members, scores, strict=True)
            if score is None
        ]

    async def _begin_refill(self) -> None:
        refill = uuid.uuid4().hex
        keys = self._link.keys
        await self._link.call(lambda: self._link.client.set(keys.sweep, refill))
        self._refill = refill
        self._position = None
        log.info("Redis at %s lacks job ids: refilling it from the store", self._link.address)

    async def _end_refill(self, refill: str) -> bool:
        keys = self._link.keys
        done = await self._link.call(
            lambda: self._finish_refill(keys=[keys.sweep, keys.epoch], args=[refill])
        )
        self._refill = None
        if done:
            log.info("Redis at %s holds every ready job id again", self._link.address)
        return bool(done)


class MissingIds:
    """When each id was first and last found missing from Redis, for the grace."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, tuple[float, float]] = {}

    def missing_for(self, jobs: list[ReadyJob], seconds: float) -> list[ReadyJob]:
        """Note `jobs` as missing now; return those found missing `seconds` ago already."""
        now = self._clock()
        lost = []
        for job in jobs:
            first, _ = self._seen.get(job.id, (now, now))
            self._seen[job.id] = (first, now)
            if now - first >= seconds:
                lost.append(job)
        return lost

    def forget(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._seen.pop(job_id, None)

    def forget_unseen_since(self, instant: float) -> None:
        """Drop ids not found missing again in the round that began at `instant`: they were
        claimed, or reached Redis, meanwhile. What is left is at most one round's misses."""
        self._seen = {key: seen for key, seen in self._seen.items() if seen[1] >= instant}
