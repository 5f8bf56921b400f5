"""One claimed job being run by a worker, and why the worker may stop it early.

The runner lets `asyncio.CancelledError` propagate when a run's task is cancelled; the
worker decides what that run amounts to from the reason it stopped it:

| stopped because | outcome settled |
|---|---|
| a user asked to cancel the job | `Cancelled()` |
| the worker is shutting down past its grace period | `Released()` (the attempt is given back) |
| the lease was lost (the job was rescued or taken over) | nothing: the job is someone else's now |

A handler that ends on its own despite the request (it caught the cancellation and
returned) keeps its outcome, except after a lost lease, where nothing is ever settled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from enum import IntEnum

from conveyor.core.outcome import Cancelled, Completed, Failed, Outcome, Released, Retrying
from conveyor.ports import Claim
from conveyor.runtime.context import JobContext
from conveyor.runtime.handler_loop import HandlerCall

log = logging.getLogger("conveyor.jobs")

_CONCLUSION_LEVELS: dict[type[Outcome], int] = {Retrying: logging.WARNING, Failed: logging.ERROR}


class StopReason(IntEnum):
    """Why the worker stopped a run; when several apply, the highest wins."""

    SHUTDOWN = 1
    CANCEL_REQUESTED = 2
    LEASE_LOST = 3


@dataclass(eq=False, slots=True)
class Run:
    claim: Claim
    context: JobContext
    task: asyncio.Task[None] | HandlerCall[Outcome] | None = None  # what stop() cancels
    stop_reason: StopReason | None = None
    concluded: bool = False  # its outcome was decided: settled, or its lease let go
    started: float = field(default_factory=time.monotonic)

    @property
    def job_id(self) -> str:
        return self.claim.job.id

    @property
    def token(self) -> str:
        return self.claim.token

    def stop(self, reason: StopReason) -> bool:
        """Stop the run (once); True the first time, when the handler is interrupted."""
        first = self.stop_reason is None
        if self.stop_reason is None or reason > self.stop_reason:
            self.stop_reason = reason
        if first:
            self.context.mark_cancelled()
            if self.task is not None:
                self.task.cancel()
        return first

    def settle_as(self, outcome: Outcome | None) -> Outcome | None:
        """What to settle, given what the runner returned (None: it was cancelled)."""
        match self.stop_reason:
            case StopReason.LEASE_LOST:
                return None
            case StopReason.CANCEL_REQUESTED:
                return outcome if outcome is not None else Cancelled()
            case StopReason.SHUTDOWN:
                return outcome if outcome is not None else Released()
            case None:
                return outcome


def log_stop(job_id: str, reason: StopReason) -> None:
    """Why the worker interrupts a run (a shutdown is logged once for all its runs)."""
    match reason:
        case StopReason.LEASE_LOST:
            log.warning(
                "job %s: lease lost (the job was rescued or taken over); stopping its run, "
                "whose outcome will be discarded",
                job_id,
            )
        case StopReason.CANCEL_REQUESTED:
            log.info("job %s: cancel requested; stopping its run", job_id)
        case StopReason.SHUTDOWN:
            pass


def log_conclusion(run: Run, outcome: Outcome) -> None:
    """One line per finished run: what operators read in a worker's output."""
    if not log.isEnabledFor(_CONCLUSION_LEVELS.get(type(outcome), logging.INFO)):
        return  # spare every job the line's formatting when nobody reads it
    job = run.claim.job
    seconds = time.monotonic() - run.started
    where = f"job {job.id} ({job.task}, attempt {job.attempt}/{job.max_attempts})"
    match outcome:
        case Completed():
            log.info("%s completed in %.3f s", where, seconds)
        case Retrying(error=error, delay=delay):
            message = "%s failed: %s: %s; retrying in %.1f s"
            log.warning(message, where, error.type, error.message, delay)
        case Failed(error=error):
            log.error("%s failed for good: %s: %s", where, error.type, error.message)
        case Cancelled():
            log.info("%s cancelled after %.3f s", where, seconds)
        case Released():
            log.info("%s released back to its queue (the worker is stopping)", where)
