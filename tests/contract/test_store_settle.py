"""What a worker writes under a claim: outcomes, heartbeats and progress, all fenced by
the claim's token."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.core.job import ErrorInfo, Job, JobState, NewJob, Progress
from conveyor.core.outcome import Cancelled, Completed, Failed, Outcome, Released, Retrying
from conveyor.ports import Claim, ProgressUpdate, Settlement
from conveyor.store.sql import SqlJobStore

LEASE = 60.0


async def claimed(store: SqlJobStore, **options: object) -> Claim:
    await store.enqueue(NewJob(task="t", **options))  # type: ignore[arg-type]
    [claim] = await store.claim(worker_id="w1", queues=(), limit=1, lease_seconds=LEASE)
    return claim


async def settle(
    store: SqlJobStore, claim: Claim, outcome: Outcome, progress: Progress | None = None
) -> Job:
    applied = await store.settle([Settlement(claim.job.id, claim.token, outcome, progress)])
    assert applied == {claim.job.id}
    return await store.get(claim.job.id)


def error(attempt: int, message: str = "boom") -> ErrorInfo:
    return ErrorInfo(type="ValueError", message=message, traceback="Traceback ...", attempt=attempt)


async def test_completed_job_keeps_its_result_and_final_progress(store: SqlJobStore) -> None:
    claim = await claimed(store)
    result = {"total": 14.0, "items": ["a", "b"], "none": None}

    job = await settle(store, claim, Completed(result), Progress(100.0, "done"))

    assert job.state is JobState.COMPLETED
    assert job.result == result
    assert job.progress == Progress(100.0, "done")
    assert job.finished_at is not None
    assert job.started_at is not None
    assert job.finished_at >= job.started_at
    assert job.worker == "w1"  # shown as the job's last worker


@pytest.mark.parametrize(
    "result",
    [42, -1.5, 0, "text", "42", True, False, [], [1, [2, {"3": None}]], {"ü": "✓"}],
    ids=repr,
)
async def test_any_json_result_comes_back_as_it_was_given(
    store: SqlJobStore, result: object
) -> None:
    job = await settle(store, await claimed(store), Completed(result))

    assert job.result == result
    assert type(job.result) is type(result)


async def test_completed_job_may_have_no_result(store: SqlJobStore) -> None:
    job = await settle(store, await claimed(store), Completed(None))

    assert (job.state, job.result) == (JobState.COMPLETED, None)


async def test_retrying_job_waits_for_its_backoff_and_records_the_error(
    store: SqlJobStore,
) -> None:
    claim = await claimed(store)

    job = await settle(store, claim, Retrying(error(1), delay=3600))

    assert job.state is JobState.RETRYABLE
    assert job.errors == (error(1),)
    assert job.finished_at is None
    assert job.started_at is not None
    assert job.run_at - job.started_at == pytest.approx(
        timedelta(hours=1), abs=timedelta(seconds=5)
    )
    assert (await store.promote_due(limit=10)).promoted == 0


async def test_failed_job_goes_to_the_dead_letter_queue_with_its_error(
    store: SqlJobStore,
) -> None:
    job = await settle(store, await claimed(store), Failed(error(1, "out of attempts")))

    assert job.state is JobState.FAILED
    assert job.error == error(1, "out of attempts")
    assert job.finished_at is not None


async def test_each_failed_attempt_adds_one_entry_to_the_error_history(
    store: SqlJobStore,
) -> None:
    claim = await claimed(store, max_attempts=3)
    for attempt in (1, 2):
        await settle(store, claim, Retrying(error(attempt), delay=0))
        assert (await store.promote_due(limit=10)).promoted == 1
        [claim] = await store.claim(worker_id="w1", queues=(), limit=1, lease_seconds=LEASE)
        assert claim.job.attempt == attempt + 1

    job = await settle(store, claim, Failed(error(3)))

    assert [entry.attempt for entry in job.errors] == [1, 2, 3]
    assert job.error == error(3)


async def test_cancelled_job_ends_cancelled(store: SqlJobStore) -> None:
    job = await settle(store, await claimed(store), Cancelled())

    assert job.state is JobState.CANCELLED
    assert job.finished_at is not None


async def test_released_job_is_queued_again_with_its_attempt_given_back(
    store: SqlJobStore,
) -> None:
    job = await settle(store, await claimed(store), Released())

    assert job.state is JobState.QUEUED
    assert job.attempt == 0
    [again] = await store.claim(worker_id="w2", queues=(), limit=1, lease_seconds=LEASE)
    assert (again.job.id, again.job.attempt) == (job.id, 1)


async def test_a_cancel_request_wins_over_a_retry(store: SqlJobStore) -> None:
    claim = await claimed(store)
    await store.cancel(claim.job.id)

    job = await settle(store, claim, Retrying(error(1), delay=0))

    assert job.state is JobState.CANCELLED
    assert job.errors == (error(1),)


async def test_a_stale_token_changes_nothing(store: SqlJobStore) -> None:
    claim = await claimed(store)
    before = await store.get(claim.job.id)

    applied = await store.settle([Settlement(claim.job.id, "not-the-token", Completed(1))])

    assert applied == frozenset()
    assert await store.get(claim.job.id) == before


async def test_the_holder_of_a_rescued_lease_can_no_longer_settle(store: SqlJobStore) -> None:
    await store.enqueue(NewJob(task="t"))
    [stale] = await store.claim(worker_id="w1", queues=(), limit=1, lease_seconds=-1)
    await store.rescue_expired(limit=10)
    [current] = await store.claim(worker_id="w2", queues=(), limit=1, lease_seconds=LEASE)

    applied = await store.settle([Settlement(stale.job.id, stale.token, Completed("late"))])

    assert applied == frozenset()
    job = await store.get(current.job.id)
    assert (job.state, job.worker, job.result) == (JobState.RUNNING, "w2", None)


async def test_a_settled_job_cannot_be_settled_twice(store: SqlJobStore) -> None:
    claim = await claimed(store)
    await settle(store, claim, Completed("first"))

    applied = await store.settle([Settlement(claim.job.id, claim.token, Completed("second"))])

    assert applied == frozenset()
    assert (await store.get(claim.job.id)).result == "first"


async def test_one_settle_applies_a_batch_of_different_outcomes(store: SqlJobStore) -> None:
    await store.enqueue_many([NewJob(task="t") for _ in range(4)])
    claims = await store.claim(worker_id="w1", queues=(), limit=4, lease_seconds=LEASE)
    outcomes: list[Outcome] = [Completed(1), Retrying(error(1), 60), Failed(error(1)), Released()]
    batch = [
        Settlement(claim.job.id, claim.token, outcome)
        for claim, outcome in zip(claims, outcomes, strict=True)
    ]

    applied = await store.settle([*batch, Settlement("missing", "token", Completed(0))])

    assert applied == {claim.job.id for claim in claims}
    states = [(await store.get(claim.job.id)).state for claim in claims]
    assert states == [JobState.COMPLETED, JobState.RETRYABLE, JobState.FAILED, JobState.QUEUED]


async def claimed_batch(store: SqlJobStore, count: int) -> list[Claim]:
    await store.enqueue_many([NewJob(task="t") for _ in range(count)])
    return await store.claim(worker_id="w1", queues=(), limit=count, lease_seconds=LEASE)


async def test_a_batch_of_completions_keeps_each_jobs_own_result(store: SqlJobStore) -> None:
    claims = await claimed_batch(store, 5)
    results: list[object] = [None, 1, True, 1.0, {"a": [1]}]

    applied = await store.settle(
        [
            Settlement(claim.job.id, claim.token, Completed(result))
            for claim, result in zip(claims, results, strict=True)
        ]
    )

    assert applied == {claim.job.id for claim in claims}
    jobs = [await store.get(claim.job.id) for claim in claims]
    assert [job.state for job in jobs] == [JobState.COMPLETED] * 5
    assert [job.result for job in jobs] == results
    assert [type(job.result) for job in jobs] == [type(result) for result in results]


async def test_a_batch_of_releases_requeues_all_but_the_job_asked_to_cancel(
    store: SqlJobStore,
) -> None:
    claims = await claimed_batch(store, 3)
    await store.cancel(claims[1].job.id)

    await store.settle([Settlement(claim.job.id, claim.token, Released()) for claim in claims])

    jobs = [await store.get(claim.job.id) for claim in claims]
    assert [job.state for job in jobs] == [JobState.QUEUED, JobState.CANCELLED, JobState.QUEUED]
    assert [job.attempt for job in jobs] == [0, 0, 0]


async def test_settle_of_nothing_applies_nothing(store: SqlJobStore) -> None:
    assert await store.settle([]) == frozenset()


# heartbeats -----------------------------------------------------------------------------


async def test_renew_extends_the_leases_the_worker_names_and_no_others(
    store: SqlJobStore,
) -> None:
    await store.enqueue_many([NewJob(task="t") for _ in range(4)])
    mine = await store.claim(worker_id="w1", queues=(), limit=2, lease_seconds=-1)
    # A claim whose reply never reached w1 (the connection dropped after the commit):
    # w1 does not know it holds this job, so it must not keep it alive by renewing.
    orphan = await store.claim(worker_id="w1", queues=(), limit=1, lease_seconds=-1)
    theirs = await store.claim(worker_id="w2", queues=(), limit=1, lease_seconds=-1)
    named = [claim.job.id for claim in mine] + [theirs[0].job.id]

    renewal = await store.renew(worker_id="w1", job_ids=named, lease_seconds=LEASE)
    rescued = await store.rescue_expired(limit=10)

    assert renewal.held == {claim.job.id for claim in mine}
    assert renewal.cancel_requested == frozenset()
    assert rescued.rescued == 2
    assert (await store.get(theirs[0].job.id)).state is JobState.QUEUED
    assert (await store.get(orphan[0].job.id)).state is JobState.QUEUED


async def test_renew_reports_cancel_requests(store: SqlJobStore) -> None:
    await store.enqueue_many([NewJob(task="t") for _ in range(2)])
    first, second = await store.claim(worker_id="w1", queues=(), limit=2, lease_seconds=LEASE)
    await store.cancel(second.job.id)

    renewal = await store.renew(
        worker_id="w1", job_ids=[first.job.id, second.job.id], lease_seconds=LEASE
    )

    assert renewal.held == {first.job.id, second.job.id}
    assert renewal.cancel_requested == {second.job.id}


async def test_renew_no_longer_reports_settled_jobs(store: SqlJobStore) -> None:
    claim = await claimed(store)
    await settle(store, claim, Completed(None))

    renewal = await store.renew(worker_id="w1", job_ids=[claim.job.id], lease_seconds=LEASE)

    assert renewal.held == frozenset()


# progress -------------------------------------------------------------------------------


async def test_progress_is_stored_while_the_token_holds(store: SqlJobStore) -> None:
    claim = await claimed(store)
    progress = Progress(42.5, "rendering")

    written = await store.record_progress(
        [
            ProgressUpdate(claim.job.id, claim.token, progress),
            ProgressUpdate(claim.job.id + "x", claim.token, progress),
        ]
    )

    assert written == {claim.job.id}
    assert (await store.get(claim.job.id)).progress == progress


async def test_progress_from_a_stale_claim_is_ignored(store: SqlJobStore) -> None:
    claim = await claimed(store)
    await settle(store, claim, Completed(None), Progress(100.0, None))

    written = await store.record_progress([ProgressUpdate(claim.job.id, claim.token, Progress(5))])

    assert written == frozenset()
    assert (await store.get(claim.job.id)).progress == Progress(100.0, None)


async def test_progress_of_nothing_writes_nothing(store: SqlJobStore) -> None:
    assert await store.record_progress([]) == frozenset()
