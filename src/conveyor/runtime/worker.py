"""The worker: claims jobs, runs them concurrently, settles their outcomes.

    worker = Worker(store=store, broker=broker, store_factory=open_store,
                    registry=registry, settings=WorkerSettings(concurrency=20))
    install_signal_handlers(worker)
    await worker.run()          # until SIGTERM/SIGINT or worker.request_stop()

Pieces, each a small loop of its own: the claim loop (here) fills free slots in batches;
each claimed job runs through the Runner as an asyncio task of its own; the Settler writes
outcomes in batches; the Heartbeat thread renews leases and writes progress; WorkerNotices
hears cancels and publishes progress at once (Redis); an optional Monitor does maintenance.
All of these run on the worker's loop (its control loop), which never runs handlers: an
attempt of an async task is a task of the HandlerLoop's thread (binding and result
conversion included), a plain function runs in a thread pool sized to the concurrency. A
handler that blocks cannot stall the rest.

Shutdown has two phases. The first `request_stop()` stops claiming and lets running jobs
finish for up to `shutdown_grace_seconds`; what still runs then is cancelled and released
(back to `queued`, attempt given back). A second `request_stop()` skips the wait: runs
are cancelled at once and released on a short best-effort write; anything not released
is rescued by a monitor when its lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence

from conveyor.core.errors import StoreUnavailable
from conveyor.core.job import Progress
from conveyor.core.outcome import Outcome, Released
from conveyor.ports import (
    Broker,
    Claim,
    JobStore,
    ReadyJob,
    Settlement,
    Signals,
)
from conveyor.runtime.backoff import Backoff, Outage, race
from conveyor.runtime.context import JobContext
from conveyor.runtime.event_loops import loop_factory
from conveyor.runtime.handler_loop import HandlerCall, HandlerLoop
from conveyor.runtime.heartbeat import (
    Heartbeat,
    HeldJobs,
    LeaseReport,
    ProgressBuffer,
    StoreFactory,
)
from conveyor.runtime.monitor import Monitor
from conveyor.runtime.notices import WorkerNotices, confirmed_by
from conveyor.runtime.registry import TaskRegistry
from conveyor.runtime.runner import Runner
from conveyor.runtime.runs import Run, StopReason, log_conclusion, log_stop
from conveyor.runtime.settler import Settler
from conveyor.runtime.signals import install_signal_handlers
from conveyor.runtime.threads import HandlerThreads
from conveyor.runtime.worker_settings import WorkerSettings, default_worker_id

__all__ = ["Worker", "WorkerSettings", "default_worker_id", "install_signal_handlers"]

log = logging.getLogger(__name__)

# After a cancel, handlers get this long to unwind before their runs are given up on.
CANCELLED_RUN_SECONDS = 2.0
# How long a stopping worker keeps trying to write its last outcomes and deregister.
FINAL_WRITE_SECONDS = 5.0
IMMEDIATE_WRITE_SECONDS = 1.0


class Worker:
    """One worker: up to `settings.concurrency` jobs at once from `settings.queues`."""

    def __init__(
        self,
        *,
        store: JobStore,
        broker: Broker,
        store_factory: StoreFactory,
        registry: TaskRegistry,
        settings: WorkerSettings,
        signals: Signals | None = None,
    ) -> None:
        self.settings = settings
        self.id = settings.worker_id
        self._store = store
        self._broker = broker
        self._registry = registry
        self._executor = HandlerThreads(settings.concurrency)
        new_loop = loop_factory(settings.event_loop)
        self._handler_loop = HandlerLoop(name=f"conveyor-handlers-{self.id}", loop_factory=new_loop)
        self._runner = Runner(
            registry,
            executor=self._executor,
            default_retry=settings.retry,
            default_timeout=settings.default_timeout,
        )
        self._runs: dict[str, Run] = {}
        self._notices = WorkerNotices(
            signals, runs=self._runs, stop_run=self._stop_run, confirm=confirmed_by(store)
        )
        self._released: list[ReadyJob] = []  # handed back at shutdown: announced once written
        self._run_ended = asyncio.Event()
        self._held = HeldJobs()
        self._progress = ProgressBuffer()
        self._settler = Settler(store, worker_id=self.id, on_done=self._settled)
        self._heartbeat = Heartbeat(
            settings=settings.heartbeat_settings(),
            store_factory=store_factory,
            held=self._held,
            progress=self._progress,
            report=self._on_lease_report,
            loop_factory=new_loop,
        )
        self._monitor = (
            Monitor.of_worker(settings, store, broker) if settings.with_monitor else None
        )
        self._stop_claiming = asyncio.Event()
        self._stop_now = asyncio.Event()
        self.ready = asyncio.Event()
        """Set once the worker has registered and starts claiming."""

    @property
    def active_jobs(self) -> frozenset[str]:
        """Jobs this worker holds: running, or finished with their outcome not yet written."""
        return frozenset(self._held.snapshot())

    @property
    def stopping(self) -> bool:
        return self._stop_claiming.is_set()

    def request_stop(self) -> None:
        """First call: finish gracefully. Second call: stop at once."""
        if not self._stop_claiming.is_set():
            log.info(
                "worker %s stopping: no new jobs; %d running get up to %g s to finish",
                self.id,
                len(self._runs),
                self.settings.shutdown_grace_seconds,
            )
            self._stop_claiming.set()
        elif not self._stop_now.is_set():
            log.warning("worker %s stopping now: cancelling %d jobs", self.id, len(self._runs))
            self._stop_now.set()

    async def run(self) -> None:
        """Work until stopped; returns once everything it could hand back is handed back."""
        self._heartbeat.start()
        self._handler_loop.start()
        try:
            async with asyncio.TaskGroup() as background:
                settling = background.create_task(self._settler.run(), name="conveyor-settle")
                listening = background.create_task(self._notices.listen(), name="conveyor-notices")
                monitoring = self._start_monitor(background)
                try:
                    await self._serve()
                finally:
                    await self._finish_runs()
                    await self._write_outcomes()
                    await self._broker.announce(self._released)
                    settling.cancel()
                    listening.cancel()
                    self._stop_monitor(monitoring)
        finally:
            await self._close()

    # Starting ------------------------------------------------------------------------
    async def _serve(self) -> None:
        if not await self._register():
            return
        await race(self._notices.listening.wait(), self._stop_claiming)  # cancels are heard
        log.info(
            "worker %s ready: queues %s, concurrency %d",
            self.id,
            ",".join(self.settings.queues) or "(all)",
            self.settings.concurrency,
        )
        self.ready.set()
        await race(self._claim_loop(), self._stop_now)
        if self._runs and not self._stop_now.is_set():
            grace = self.settings.shutdown_grace_seconds
            await race(self._all_runs_done(), self._stop_now, timeout=grace)

    async def _register(self) -> bool:
        """Register tasks and this worker, retrying through outages; False if stopped first."""
        backoff = Backoff()
        outage = Outage(log, f"worker {self.id} starting")
        while not self._stop_claiming.is_set():
            try:
                await self._broker.start()
                await self._store.register_tasks(self._registry.infos())
                await self._store.register_worker(self.settings.worker_info())
            except Exception as error:  # a worker started before its database waits for it
                self._note_failure(outage, "registering", error)
                await race(asyncio.sleep(backoff.next_delay()), self._stop_claiming)
                continue
            outage.recovered()
            return True
        return False

    # Claiming ------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        backoff = Backoff()
        outage = Outage(log, f"worker {self.id} claiming")
        while not self._stop_claiming.is_set():
            free = self.settings.concurrency - len(self._runs)
            if free <= 0:
                await race(self._slot_available(), self._stop_claiming)
                continue
            try:
                claims = await self._broker.claim(
                    worker_id=self.id,
                    queues=self.settings.queues,
                    limit=free,
                    lease_seconds=self.settings.lease_seconds,
                )
            except Exception as error:  # never crash, never spin: back off and try again
                self._note_failure(outage, "claiming", error)
                await race(asyncio.sleep(backoff.next_delay()), self._stop_claiming)
                continue
            outage.recovered()
            backoff.reset()
            for claim in claims:
                self._start_run(claim)
            if len(claims) < free:
                await race(self._wait_for_work(), self._stop_claiming)

    async def _wait_for_work(self) -> None:
        poll = self.settings.poll_interval_seconds
        try:
            await self._broker.wait_for_work(self.settings.queues, poll)
        except Exception:  # a broken wake-up costs latency, never the worker: just poll
            log.exception("waiting for work failed; polling instead")
            await asyncio.sleep(poll)

    async def _slot_available(self) -> None:
        await self._runs_at_most(self.settings.concurrency - 1)

    async def _runs_at_most(self, count: int) -> None:
        while len(self._runs) > count:
            self._run_ended.clear()
            await self._run_ended.wait()

    @staticmethod
    def _note_failure(outage: Outage, action: str, error: Exception) -> None:
        if isinstance(error, StoreUnavailable):
            outage.failed(error)
        else:
            log.exception("%s failed; retrying", action)

    # Running -------------------------------------------------------------------------
    def _start_run(self, claim: Claim) -> None:
        stale = self._runs.get(claim.job.id)
        if stale is not None:
            # Our older claim of this job lapsed and we claimed it again: the old run is void.
            stale.stop(StopReason.LEASE_LOST)
        self._held.add(claim.job.id, claim.token)
        report = functools.partial(self._report_progress, claim)
        run = Run(claim, JobContext(claim.job, report_progress=report))
        self._runs[run.job_id] = run
        if self._runner.runs_async(claim.job):
            # The whole attempt is one task of the handler loop, and this loop hears of its
            # end through a callback: no task here waits on it (a task per job here cost
            # 12-25 % of a worker's CPU per job in drains of no-op jobs).
            attempt = functools.partial(self._runner.run, claim, run.context)
            run.task = self._handler_loop.submit(attempt)
            run.task.when_done(functools.partial(self._attempt_done, run))
        else:
            run.task = asyncio.create_task(self._execute(run), name=f"conveyor-job-{run.job_id}")

    async def _execute(self, run: Run) -> None:
        outcome: Outcome | None = None
        try:
            outcome = await self._runner.run(run.claim, run.context)
        except asyncio.CancelledError:
            if run.stop_reason is None:
                self._end_run(run)
                raise  # cancelled by someone else (the loop is closing): not ours to settle
        except Exception:
            self._runner_failed(run)
            return
        self._conclude(run, run.settle_as(outcome))

    def _attempt_done(self, run: Run, call: HandlerCall[Outcome]) -> None:
        try:
            outcome = call.outcome()
        except asyncio.CancelledError:
            # Stopped by this worker (settled as its reason says), or dropped by a closing
            # handler loop (no reason: the lease is let go and the job rescued).
            self._conclude(run, run.settle_as(None))
        except Exception:
            self._runner_failed(run)
        else:
            self._conclude(run, run.settle_as(outcome))

    def _runner_failed(self, run: Run) -> None:
        # The runner itself broke. Stop renewing the lease, as if this process had died:
        # the monitor rescues the job, with the attempt counted.
        log.exception("job %s: the runner failed; it runs again once its lease expires", run.job_id)
        self._conclude(run, None)

    def _conclude(self, run: Run, outcome: Outcome | None) -> None:
        """The run is over: settle its outcome, or (None) let go of its lease unsettled."""
        if run.concluded:
            return
        run.concluded = True
        self._end_run(run)
        progress = self._progress.finish(run.job_id, run.token)
        if outcome is None:
            self._held.remove(run.job_id, run.token)
            return
        log_conclusion(run, outcome)
        if isinstance(outcome, Released):
            self._released.append(ReadyJob.of(run.claim.job))
        self._settler.add(Settlement(run.job_id, run.token, outcome, progress))

    def _end_run(self, run: Run) -> None:
        if self._runs.get(run.job_id) is run:
            del self._runs[run.job_id]
            self._run_ended.set()

    def _settled(self, settlements: Sequence[Settlement]) -> None:
        # Written (or refused by fencing): only now may the heartbeat stop renewing them.
        for settlement in settlements:
            self._held.remove(settlement.job_id, settlement.token)

    def _report_progress(self, claim: Claim, progress: Progress) -> None:
        run = self._runs.get(claim.job.id)
        if run is not None and run.claim is claim:  # late reports of an ended run are void
            self._progress.report(claim.job.id, claim.token, progress)
            self._notices.progress(claim.job, progress)

    def _on_lease_report(self, report: LeaseReport) -> None:
        """Called on this loop by the heartbeat thread."""
        for job_id, token in report.lost.items():
            self._stop_run(job_id, token, StopReason.LEASE_LOST)
        for job_id, token in report.cancel_requested.items():
            self._stop_run(job_id, token, StopReason.CANCEL_REQUESTED)

    def _stop_run(self, job_id: str, token: str, reason: StopReason) -> None:
        run = self._runs.get(job_id)
        if run is None or run.token != token:
            return  # already finished: its settle tells the store what happened
        if run.stop(reason):
            log_stop(job_id, reason)

    # Stopping ------------------------------------------------------------------------
    async def _all_runs_done(self) -> None:
        await self._runs_at_most(0)

    async def _finish_runs(self) -> None:
        """Cancel what still runs; each becomes Released (unless cancelled or lost)."""
        self._stop_claiming.set()
        if not self._runs:
            return
        log.warning("worker %s: releasing %d unfinished jobs", self.id, len(self._runs))
        for run in list(self._runs.values()):
            run.stop(StopReason.SHUTDOWN)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CANCELLED_RUN_SECONDS):
                await self._all_runs_done()
        for run in list(self._runs.values()):
            # The handler ignores cancellation: hand the job back without waiting for it.
            self._conclude(run, run.settle_as(None))

    async def _write_outcomes(self) -> None:
        if not await self._settler.drain(self._final_write_seconds()):
            log.warning(
                "worker %s: %d outcomes could not be written; those jobs are rescued once "
                "their leases expire",
                self.id,
                self._settler.pending,
            )

    def _final_write_seconds(self) -> float:
        return IMMEDIATE_WRITE_SECONDS if self._stop_now.is_set() else FINAL_WRITE_SECONDS

    async def _close(self) -> None:
        stopped = await self._heartbeat.stop(timeout=self._final_write_seconds())
        if not stopped:
            log.warning("worker %s: the heartbeat thread is still busy; leaving it", self.id)
        await self._deregister()
        await self._notices.close()
        await self._stop_handlers()
        log.info("worker %s stopped", self.id)

    async def _stop_handlers(self) -> None:
        # Their jobs were all handed back by now; what still runs ignored the stop.
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._executor.busy:
            log.warning(
                "worker %s: %d plain-function handlers still run; they end with the process",
                self.id,
                self._executor.busy,
            )
        await self._handler_loop.stop(timeout=CANCELLED_RUN_SECONDS)

    async def _deregister(self) -> None:
        if not self.ready.is_set():
            return
        try:
            async with asyncio.timeout(self._final_write_seconds()):
                await self._store.deregister_worker(worker_id=self.id)
        except Exception as error:  # the monitor marks it dead once it stays silent
            log.warning("worker %s could not deregister: %s", self.id, error)

    # Helpers -------------------------------------------------------------------------
    def _start_monitor(self, group: asyncio.TaskGroup) -> asyncio.Task[None] | None:
        if self._monitor is None:
            return None
        return group.create_task(self._monitor.run(), name="conveyor-monitor")

    def _stop_monitor(self, task: asyncio.Task[None] | None) -> None:
        if self._monitor is None or task is None:
            return
        self._monitor.request_stop()
        if self._stop_now.is_set():
            task.cancel()
