"""Counter increments: summed per row within a transaction, run times in `le` buckets."""

from __future__ import annotations

import pytest

from conveyor.ports import RUN_TIME_BUCKETS, CounterEvent
from conveyor.store.counters import Tally, bucket_index, bucket_label


def test_increments_of_one_counter_add_up_before_they_are_written() -> None:
    tally = Tally()
    tally.count(CounterEvent.COMPLETED, "a")
    tally.count(CounterEvent.COMPLETED, "a", 2)
    tally.count(CounterEvent.FAILED, "a")

    assert dict(tally.values) == {("completed", "a", ""): 3, ("failed", "a", ""): 1}


@pytest.mark.parametrize(
    ("seconds", "label"),
    [(0.0, "0.005"), (0.005, "0.005"), (0.0051, "0.01"), (3.0, "5.0"), (3600.0, "3600.0")],
)
def test_a_run_time_falls_in_the_first_bucket_whose_bound_covers_it(
    seconds: float, label: str
) -> None:
    tally = Tally()
    tally.observe_run_time("q", seconds)

    assert dict(tally.values) == {
        ("run_seconds_bucket", "q", label): 1,
        ("run_seconds_sum", "q", ""): seconds,
        ("run_seconds_count", "q", ""): 1,
    }


def test_a_run_time_above_every_bound_falls_in_the_infinite_bucket() -> None:
    tally = Tally()
    tally.observe_run_time("q", 7200.0)

    assert tally.values[("run_seconds_bucket", "q", "+Inf")] == 1


def test_bucket_labels_read_back_as_their_bucket() -> None:
    every = range(len(RUN_TIME_BUCKETS) + 1)

    assert [bucket_index(bucket_label(index)) for index in every] == list(every)


def test_a_bound_no_longer_listed_reads_back_as_the_next_bucket() -> None:
    assert bucket_index("0.3") == RUN_TIME_BUCKETS.index(0.5)
    assert bucket_index("7200") == len(RUN_TIME_BUCKETS)
