"""The worker's side of the `Signals`: cancel notices stop runs at once, and the progress
handlers report is published as it comes.

Both are shortcuts. The heartbeat still finds `cancel_requested` in the store and still
writes progress there every `progress_interval_seconds`, so a lost notice costs latency.
A cancel notice is a reason to look, not an order: the run stops only once the store
confirms the cancel request (whoever can publish on the deployment's Redis could forge one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from conveyor.core.job import Job, Progress
from conveyor.ports import CancelNotice, JobStore, ProgressNotice, Signals
from conveyor.runtime.runs import Run, StopReason

log = logging.getLogger(__name__)

# How long a stopping worker lets its last progress notices go out.
FINAL_PUBLISH_SECONDS = 1.0

StopRun = Callable[[str, str, StopReason], None]
Confirm = Callable[[CancelNotice], Awaitable[bool]]


def confirmed_by(store: JobStore) -> Confirm:
    """Confirms a cancel notice when the store has the request, for the attempt it names."""

    async def confirm(notice: CancelNotice) -> bool:
        job = await store.get(notice.job_id, tenant=None)
        return job.cancel_requested and job.attempt == notice.attempt

    return confirm


class WorkerNotices:
    """Listens for cancel notices and publishes progress notices for one worker.

    `runs` is the worker's table of running jobs, and `stop_run(job_id, token, reason)`
    how it stops one: a notice stops the run of its job only if that run is the attempt
    the notice names (a job retried since is not touched) and `confirm(notice)` finds the
    cancel request in the store.
    """

    def __init__(
        self,
        signals: Signals | None,
        *,
        runs: Mapping[str, Run],
        stop_run: StopRun,
        confirm: Confirm,
    ) -> None:
        self._signals = signals
        self._runs = runs
        self._stop_run = stop_run
        self._confirm = confirm
        self._pending: dict[str, ProgressNotice] = {}
        self._publishing: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        """Set once cancel notices are heard (or without signals, at once)."""
        if signals is None:
            self.listening.set()

    # Cancel notices --------------------------------------------------------------------
    async def listen(self) -> None:
        """Stop the runs that cancel notices name, until cancelled or the signals close."""
        if self._signals is None:
            return
        try:
            async with self._signals.cancellations() as notices:
                self.listening.set()
                async for notice in notices:
                    await self._on_cancel(notice)
        except Exception:  # the heartbeat still delivers cancels: never take the worker down
            log.exception("listening for cancel notices failed; cancels wait for heartbeats")
        finally:
            self.listening.set()

    async def _on_cancel(self, notice: CancelNotice) -> None:
        run = self._runs.get(notice.job_id)
        if run is None or run.claim.job.attempt != notice.attempt:
            return  # not ours (most notices are for other workers' jobs)
        try:
            confirmed = await self._confirm(notice)
        except Exception as error:  # the store is away: the heartbeat will tell, later
            log.warning("job %s: could not confirm a cancel notice: %s", notice.job_id, error)
            return
        if confirmed:
            self._stop_run(run.job_id, run.token, StopReason.CANCEL_REQUESTED)
        else:
            log.warning("job %s: ignored a cancel notice the store does not confirm", run.job_id)

    # Progress notices ------------------------------------------------------------------
    def progress(self, job: Job, progress: Progress) -> None:
        """Publish soon, never waiting: reports made while a publish is out are coalesced
        (the latest per job) and go together in the next one."""
        if self._signals is None:
            return
        self._pending[job.id] = ProgressNotice(job.id, job.attempt, progress)
        if self._publishing is None:
            self._publishing = asyncio.create_task(
                self._publish(self._signals), name="conveyor-progress-notices"
            )

    async def _publish(self, signals: Signals) -> None:
        try:
            while self._pending:
                notices = list(self._pending.values())
                self._pending.clear()
                await signals.publish_progress(notices)
        except Exception:  # publishing never raises; if it did, the store still has it
            log.exception("publishing progress notices failed")
        finally:
            self._publishing = None

    async def close(self) -> None:
        """Let the last progress notices go out (briefly), then stop publishing."""
        task = self._publishing
        if task is None:
            return
        _, late = await asyncio.wait({task}, timeout=FINAL_PUBLISH_SECONDS)
        for unfinished in late:
            unfinished.cancel()
        await asyncio.gather(task, return_exceptions=True)
