"""The monitor: maintenance passes that run on exactly one elected leader.

Each pass, a monitor asks the store for leadership; the leader promotes due jobs, rescues
expired leases (announcing to the broker the jobs both made ready), prunes old terminal
jobs, marks silent workers dead, and takes a step of the broker's reconciler (which makes an
id-based broker such as Redis hold every ready job again after it lost some). Every step is
bounded and conditional, so a second leader by accident (a paused process whose leadership
lapsed) does no harm, only duplicate work. Every worker runs a monitor by default;
leadership makes that safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import fields

from conveyor.core.errors import StoreUnavailable
from conveyor.ports import Broker, JobStore, Maintenance, Reconciliation
from conveyor.runtime.backoff import Backoff, Outage
from conveyor.runtime.worker_settings import WorkerSettings

log = logging.getLogger(__name__)

INTERVAL_JITTER = 0.1  # each pass comes within ±10% of the interval: monitors spread out
MIN_LEADERSHIP_SECONDS = 1.0
# A large backlog is worked off over passes; one pass stops after this many full batches.
MAX_BATCHES_PER_STEP = 20
# While the broker holds what it should, a pass takes this many reconciler steps: the head
# of the claim order and one page further on (see redis_reconciling.py).
SETTLED_STEPS_PER_PASS = 2
RESIGN_TIMEOUT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 30.0
# While the broker refills itself (Redis restarted empty), passes follow each other this
# closely, so a large backlog is republished in seconds rather than over many intervals.
CATCH_UP_PAUSE_SECONDS = 0.05


class Monitor:
    """Runs maintenance passes every `interval_seconds` while it is the leader."""

    def __init__(
        self,
        store: JobStore,
        *,
        broker: Broker,
        holder_id: str,
        interval_seconds: float,
        lease_seconds: float,
        retention_seconds: float,
        batch_size: int = 1000,
        dead_worker_seconds: float | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if interval_seconds <= 0 or batch_size < 1:
            raise ValueError("the monitor needs interval_seconds > 0 and batch_size >= 1")
        self._store = store
        self._broker = broker
        self.holder_id = holder_id
        self._interval = interval_seconds
        self._retention = retention_seconds
        self._batch_size = batch_size
        # Silent for two leases: its jobs' leases have expired too, so it is surely gone.
        self._dead_after = dead_worker_seconds or 2 * lease_seconds
        self._jitter = jitter
        self._stopping = asyncio.Event()
        self._backoff = Backoff(
            base_seconds=interval_seconds, max_seconds=max(interval_seconds, MAX_BACKOFF_SECONDS)
        )
        self._outage = Outage(log, f"monitor {holder_id}")
        self._catching_up = False
        self.leading = False

    @classmethod
    def of_worker(cls, settings: WorkerSettings, store: JobStore, broker: Broker) -> Monitor:
        """The monitor a worker runs beside its jobs, led under the worker's id."""
        return cls(
            store,
            broker=broker,
            holder_id=settings.worker_id,
            interval_seconds=settings.monitor_interval_seconds,
            lease_seconds=settings.lease_seconds,
            retention_seconds=settings.retention_seconds,
        )

    @property
    def leadership_seconds(self) -> float:
        """How long leadership lasts unrenewed: a few missed passes, not one late one."""
        return max(3 * self._interval, MIN_LEADERSHIP_SECONDS)

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Run passes until `request_stop()` or cancellation, then resign the leadership."""
        try:
            while not self._stopping.is_set():
                await self._pause(await self._pass())
        finally:
            await self._resign()

    async def run_once(self) -> Maintenance | None:
        """One pass: what it changed, or None when another monitor leads."""
        if not await self._lead():
            return None
        changes = [
            await self._repeat(self._promote),
            await self._repeat(self._rescue),
            await self._repeat(self._prune),
            Maintenance(
                dead_workers=await self._store.mark_dead_workers(
                    silent_for_seconds=self._dead_after
                )
            ),
            await self._reconcile(),
        ]
        return _combined(changes)

    async def _pass(self) -> float:
        """Run one pass and say how long to wait before the next."""
        try:
            maintenance = await self.run_once()
        except StoreUnavailable as error:
            self._outage.failed(error)
            return self._backoff.next_delay()
        except Exception:  # a monitor must keep running whatever one pass hit
            log.exception("monitor %s: maintenance pass failed", self.holder_id)
            return self._backoff.next_delay()
        self._outage.recovered()
        self._backoff.reset()
        if maintenance is not None:
            _log_changes(maintenance)
        if self._catching_up:
            return CATCH_UP_PAUSE_SECONDS
        return self._interval * (1 + INTERVAL_JITTER * (2 * self._jitter() - 1))

    async def _lead(self) -> bool:
        leading = await self._store.try_lead(
            holder=self.holder_id, ttl_seconds=self.leadership_seconds
        )
        if leading != self.leading:
            state = "is now the leader" if leading else "lost the leadership"
            log.info("monitor %s %s", self.holder_id, state)
        self.leading = leading
        return leading

    async def _repeat(self, step: Callable[[], Awaitable[Maintenance]]) -> Maintenance:
        """Repeat a bounded step while it comes back full: a backlog is worked off now."""
        results = []
        for _ in range(MAX_BATCHES_PER_STEP):
            result = await step()
            results.append(result)
            if _changed(result) < self._batch_size:
                break
        return _combined(results)

    async def _promote(self) -> Maintenance:
        return await self._announced(await self._store.promote_due(limit=self._batch_size))

    async def _rescue(self) -> Maintenance:
        return await self._announced(await self._store.rescue_expired(limit=self._batch_size))

    async def _announced(self, maintenance: Maintenance) -> Maintenance:
        # Committed already: were this process to die before announcing, the reconciler
        # would find these jobs missing from the broker and publish them.
        await self._broker.announce(maintenance.ready)
        return maintenance

    async def _reconcile(self) -> Maintenance:
        """Bounded steps of the broker's reconciler, until a round is done or the bound."""
        step = Reconciliation()
        republished = 0
        for taken in range(1, MAX_BATCHES_PER_STEP + 1):
            step = await self._broker.reconcile(limit=self._batch_size)
            republished += step.republished
            if step.round_done or (taken >= SETTLED_STEPS_PER_PASS and not step.catching_up):
                break
        self._catching_up = step.catching_up
        return Maintenance(republished=republished)

    async def _prune(self) -> Maintenance:
        pruned = await self._store.prune(older_than_seconds=self._retention, limit=self._batch_size)
        return Maintenance(pruned=pruned)

    async def _resign(self) -> None:
        if not self.leading:
            return
        self.leading = False
        try:
            async with asyncio.timeout(RESIGN_TIMEOUT_SECONDS):
                await self._store.resign(holder=self.holder_id)
        except Exception as error:  # leadership then simply lapses after its time to live
            log.debug("monitor %s could not resign: %s", self.holder_id, error)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()


_COUNTS = tuple(item.name for item in fields(Maintenance) if isinstance(item.default, int))


def _changed(maintenance: Maintenance) -> int:
    return sum(getattr(maintenance, name) for name in _COUNTS)


def _combined(results: list[Maintenance]) -> Maintenance:
    totals = {name: sum(getattr(result, name) for result in results) for name in _COUNTS}
    ready = tuple(job for result in results for job in result.ready)
    return Maintenance(**totals, ready=ready)


def _log_changes(maintenance: Maintenance) -> None:
    # Promotions are routine (every delayed job and retry); rescues mean a worker died.
    level = logging.DEBUG
    # Republished ids mean the broker had lost some: worth knowing too.
    noteworthy = (maintenance.rescued, maintenance.dead_lettered, maintenance.dead_workers)
    if any(noteworthy) or maintenance.republished:
        level = logging.INFO
    if _changed(maintenance):
        log.log(
            level,
            "monitor: promoted %d, rescued %d, dead-lettered %d, pruned %d, dead workers %d, "
            "republished %d",
            maintenance.promoted,
            maintenance.rescued,
            maintenance.dead_lettered,
            maintenance.pruned,
            maintenance.dead_workers,
            maintenance.republished,
        )
