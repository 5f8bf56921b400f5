"""What one run of a job produced, as frozen values the worker hands to the store."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.core.job import ErrorInfo, JSONValue, Transition


@dataclass(frozen=True, slots=True)
class Completed:
    result: JSONValue


@dataclass(frozen=True, slots=True)
class Retrying:
    """The attempt failed and another is due after `delay` seconds (database clock)."""

    error: ErrorInfo
    delay: float


@dataclass(frozen=True, slots=True)
class Failed:
    """The job goes to the dead-letter queue: out of attempts, or not retryable."""

    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class Cancelled:
    reason: str = "cancelled by request"


@dataclass(frozen=True, slots=True)
class Released:
    """The worker stopped before the run ended; the job goes back to the queue.

    The attempt is given back: a deploy or a shutdown is not the job's fault.
    """


Outcome = Completed | Retrying | Failed | Cancelled | Released


def transition_for(outcome: Outcome) -> Transition:
    match outcome:
        case Completed():
            return Transition.COMPLETE
        case Retrying():
            return Transition.RETRY_LATER
        case Failed():
            return Transition.FAIL
        case Cancelled():
            return Transition.CANCEL_RUNNING
        case Released():
            return Transition.RELEASE
