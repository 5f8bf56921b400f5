"""What the worker and its heartbeat thread share: the leases held and the latest
progress; and how a renewal is read (leases lost, cancellations requested)."""

from __future__ import annotations

from conveyor.core.job import Progress
from conveyor.ports import ProgressUpdate, Renewal
from conveyor.runtime.heartbeat import HeldJobs, LeaseReport, ProgressBuffer, compare


def test_only_the_latest_progress_of_a_job_is_written() -> None:
    buffer = ProgressBuffer()
    for step in range(1000):
        buffer.report("job-1", "token-1", Progress(step / 10))
    buffer.report("job-2", "token-2", Progress(5, "two"))

    assert buffer.take_pending() == [
        ProgressUpdate("job-1", "token-1", Progress(99.9)),
        ProgressUpdate("job-2", "token-2", Progress(5, "two")),
    ]
    assert buffer.take_pending() == []  # nothing new since


def test_a_failed_write_is_retried_unless_a_newer_report_came() -> None:
    buffer = ProgressBuffer()
    buffer.report("job-1", "t", Progress(10))
    buffer.report("job-2", "t", Progress(10))
    failed = buffer.take_pending()
    buffer.report("job-2", "t", Progress(20))

    buffer.requeue(failed)

    assert buffer.take_pending() == [
        ProgressUpdate("job-2", "t", Progress(20)),
        ProgressUpdate("job-1", "t", Progress(10)),
    ]


def test_the_settle_carries_the_last_progress_and_the_job_is_forgotten() -> None:
    buffer = ProgressBuffer()
    buffer.report("job-1", "t", Progress(40, "almost"))

    assert buffer.finish("job-1", "t") == Progress(40, "almost")
    assert buffer.finish("job-1", "t") is None
    assert buffer.take_pending() == []


def test_an_older_claim_cannot_take_the_progress_of_a_newer_claim() -> None:
    buffer = ProgressBuffer()
    buffer.report("job-1", "new-token", Progress(5))

    assert buffer.finish("job-1", "old-token") is None
    assert buffer.finish("job-1", "new-token") == Progress(5)


def test_forgetting_an_old_claim_keeps_a_newer_claim_of_the_same_job() -> None:
    held = HeldJobs()
    held.add("job-1", "old")
    held.add("job-1", "new")

    held.remove("job-1", "old")
    assert held.snapshot() == {"job-1": "new"}
    held.remove("job-1", "new")
    assert len(held) == 0


def test_a_renewal_reports_lost_leases_and_requested_cancels_of_held_jobs() -> None:
    held = {"kept": "t1", "lost": "t2", "cancel": "t3"}
    renewal = Renewal(
        held=frozenset({"kept", "cancel", "claimed-since"}),
        cancel_requested=frozenset({"cancel"}),
    )

    assert compare(held, renewal) == LeaseReport(
        lost={"lost": "t2"}, cancel_requested={"cancel": "t3"}
    )
