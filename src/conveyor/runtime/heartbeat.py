"""The heartbeat: renews a worker's leases and writes progress from its own OS thread.

A handler that blocks the worker's event loop (`time.sleep` in an `async def`) or holds the
GIL in long stretches must not let its own lease expire (DESIGN §1.7). So the heartbeat
runs on a separate thread, with its own event loop and its own store connections from
`store_factory`, and shares only two small locked structures with the worker:

* `HeldJobs`: the job ids (and claim tokens) this worker holds a lease on: running, or
  finished and waiting for their settle to be written.
* `ProgressBuffer`: the latest progress reported per job, written at most once per
  `progress_interval_seconds` in one statement, whatever the handler's reporting rate.

What the heartbeat learns (leases lost, cancellations requested) goes back to the worker's
loop with `call_soon_threadsafe`; if that loop is blocked, the news is simply acted on later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from conveyor.core.errors import StoreUnavailable
from conveyor.core.job import Progress
from conveyor.ports import JobStore, ProgressUpdate, Renewal
from conveyor.runtime.backoff import Backoff, Outage
from conveyor.runtime.event_loops import LoopFactory

log = logging.getLogger(__name__)

# Each beat comes between 90% and 100% of the interval: spread out, never late.
BEAT_JITTER = 0.1

StoreFactory = Callable[[], Awaitable[JobStore]]


class HeldJobs:
    """The leases this worker holds, by job id, with the token of each claim."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}

    def add(self, job_id: str, token: str) -> None:
        with self._lock:
            self._tokens[job_id] = token

    def remove(self, job_id: str, token: str) -> None:
        """Forget the claim `token` of `job_id`, not a newer claim of the same job."""
        with self._lock:
            if self._tokens.get(job_id) == token:
                del self._tokens[job_id]

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return dict(self._tokens)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)


class ProgressBuffer:
    """The latest progress per running job; written in batches, never once per report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, ProgressUpdate] = {}
        self._pending: dict[str, ProgressUpdate] = {}

    def report(self, job_id: str, token: str, progress: Progress) -> None:
        update = ProgressUpdate(job_id, token, progress)
        with self._lock:
            self._latest[job_id] = update
            self._pending[job_id] = update

    def take_pending(self) -> list[ProgressUpdate]:
        """What changed since the last call; the caller writes it."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return list(pending.values())

    def requeue(self, updates: Sequence[ProgressUpdate]) -> None:
        """Put back updates whose write failed, unless a newer one or the job's end came."""
        with self._lock:
            for update in updates:
                if self._latest.get(update.job_id) is update:
                    self._pending.setdefault(update.job_id, update)

    def finish(self, job_id: str, token: str) -> Progress | None:
        """The claim's last progress, which its settle carries; the job is forgotten here."""
        with self._lock:
            latest = self._latest.get(job_id)
            if latest is None or latest.token != token:
                return None  # nothing reported, or only by a newer claim of the same job
            del self._latest[job_id]
            self._pending.pop(job_id, None)
        return latest.progress


@dataclass(frozen=True, slots=True)
class LeaseReport:
    """What one renewal found, for claims the worker held before it: job id → token."""

    lost: Mapping[str, str]
    cancel_requested: Mapping[str, str]


def compare(held: Mapping[str, str], renewal: Renewal) -> LeaseReport:
    lost = {job_id: token for job_id, token in held.items() if job_id not in renewal.held}
    cancelled = {
        job_id: token for job_id, token in held.items() if job_id in renewal.cancel_requested
    }
    return LeaseReport(lost=lost, cancel_requested=cancelled)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatSettings:
    worker_id: str
    lease_seconds: float
    interval_seconds: float
    progress_interval_seconds: float


class Heartbeat:
    """Runs the heartbeat thread; `start()` and `stop()` are called on the worker's loop."""

    def __init__(
        self,
        *,
        settings: HeartbeatSettings,
        store_factory: StoreFactory,
        held: HeldJobs,
        progress: ProgressBuffer,
        report: Callable[[LeaseReport], None],
        loop_factory: LoopFactory = asyncio.new_event_loop,
    ) -> None:
        self._settings = settings
        self._new_loop = loop_factory
        self._store_factory = store_factory
        self._held = held
        self._progress = progress
        self._report = report
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()  # used on the heartbeat thread's loop only
        self._outage = Outage(log, f"heartbeat of worker {settings.worker_id}")
        self._worker_loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(
            target=self._main, name=f"conveyor-heartbeat-{settings.worker_id}", daemon=True
        )

    def start(self) -> None:
        self._worker_loop = asyncio.get_running_loop()
        self._loop = self._new_loop()
        self._thread.start()

    async def stop(self, *, timeout: float | None = None) -> bool:
        """Ask the thread to finish and wait for it; False if it is still busy at `timeout`.

        A store call in flight is allowed to finish rather than being cut off.
        """
        if self._loop is None:
            return True  # never started
        with contextlib.suppress(RuntimeError):  # its loop is already closed: nothing to do
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, timeout)
        return not self._thread.is_alive()

    # On the heartbeat thread -------------------------------------------------------
    def _main(self) -> None:
        loop = self._loop
        assert loop is not None  # start() made it
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._run())
        except Exception:
            log.exception("the heartbeat thread of worker %s failed", self._settings.worker_id)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _run(self) -> None:
        store = await self._open_store()
        if store is None:
            return
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._renew_loop(store))
                group.create_task(self._progress_loop(store))
        finally:
            await _close_quietly(store)

    async def _open_store(self) -> JobStore | None:
        backoff = Backoff()
        while not self._stopping.is_set():
            try:
                store = await self._store_factory()
            except Exception as error:  # the thread must survive whatever opening raised
                self._outage.failed(error)
                await self._pause(backoff.next_delay())
                continue
            self._outage.recovered()
            return store
        return None

    async def _renew_loop(self, store: JobStore) -> None:
        interval = self._settings.interval_seconds
        backoff = Backoff(base_seconds=min(0.1, interval), max_seconds=interval)
        while not self._stopping.is_set():
            if await self._beat(store):
                backoff.reset()
                delay = interval * (1 - BEAT_JITTER * random.random())
            else:
                # Leases are at stake: retry well before the next regular beat.
                delay = backoff.next_delay()
            await self._pause(delay)

    async def _beat(self, store: JobStore) -> bool:
        held = self._held.snapshot()
        settings = self._settings
        try:
            renewal = await store.renew(
                worker_id=settings.worker_id, job_ids=held, lease_seconds=settings.lease_seconds
            )
            self._send(compare(held, renewal))
            await store.worker_heartbeat(worker_id=settings.worker_id, running_jobs=len(held))
        except Exception as error:  # never die silently: log, back off, try again
            self._failed("renewing leases", error)
            return False
        self._outage.recovered()
        return True

    async def _progress_loop(self, store: JobStore) -> None:
        interval = self._settings.progress_interval_seconds
        backoff = Backoff(base_seconds=interval, max_seconds=max(interval, 10.0))
        delay = interval
        while not self._stopping.is_set():
            await self._pause(delay)
            updates = self._progress.take_pending()
            if not updates:
                continue
            try:
                await store.record_progress(updates)
            except Exception as error:
                self._failed("writing progress", error)
                self._progress.requeue(updates)
                delay = backoff.next_delay()
                continue
            backoff.reset()
            delay = interval

    def _failed(self, action: str, error: Exception) -> None:
        if isinstance(error, StoreUnavailable):
            self._outage.failed(error)
        else:
            log.exception("heartbeat of worker %s: %s failed", self._settings.worker_id, action)

    def _send(self, report: LeaseReport) -> None:
        if not (report.lost or report.cancel_requested) or self._worker_loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the worker's loop is gone: it stopped
            self._worker_loop.call_soon_threadsafe(self._report, report)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()


async def _close_quietly(store: JobStore) -> None:
    try:
        await store.close()
    except Exception:  # closing connections to a database that is down may fail
        log.debug("closing the heartbeat's store failed", exc_info=True)
