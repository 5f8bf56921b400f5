"""The reconciler's memory of missing ids: an id is lost only when found missing twice, the
grace apart, so that one popped and about to be claimed is never republished."""

from __future__ import annotations

from conveyor.brokers.redis_reconciling import MissingIds
from conveyor.ports import ReadyJob

GRACE = 2.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def job(job_id: str) -> ReadyJob:
    return ReadyJob(job_id, "default", 0)


def test_an_id_is_lost_once_it_was_missing_the_grace_ago_already() -> None:
    clock = Clock()
    missing = MissingIds(clock)

    assert missing.missing_for([job("a")], GRACE) == []
    clock.now += GRACE / 2
    assert missing.missing_for([job("a"), job("b")], GRACE) == []
    clock.now += GRACE / 2
    assert missing.missing_for([job("a"), job("b")], GRACE) == [job("a")]


def test_without_a_grace_an_id_is_lost_at_once() -> None:
    assert MissingIds(Clock()).missing_for([job("a")], 0.0) == [job("a")]


def test_ids_not_missing_again_in_a_round_are_forgotten() -> None:
    clock = Clock()
    missing = MissingIds(clock)
    missing.missing_for([job("claimed"), job("lost")], GRACE)
    round_started = clock.now = clock.now + 1
    missing.missing_for([job("lost")], GRACE)  # "claimed" was claimed meanwhile

    missing.forget_unseen_since(round_started)
    clock.now += GRACE

    # "claimed", missing again much later, starts over; "lost" kept its first sighting.
    assert missing.missing_for([job("claimed"), job("lost")], GRACE) == [job("lost")]


def test_a_republished_id_starts_over() -> None:
    clock = Clock()
    missing = MissingIds(clock)
    missing.missing_for([job("a")], GRACE)
    clock.now += GRACE
    assert missing.missing_for([job("a")], GRACE) == [job("a")]

    missing.forget(["a"])

    assert missing.missing_for([job("a")], GRACE) == []
