"""Percentiles by nearest rank and the minutes a statistics window is shown as."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conveyor.ports import Percentiles
from conveyor.store.stats import Minutes, nearest_rank, percentiles


@pytest.mark.parametrize(
    ("percent", "expected"),
    [(1, 1.0), (10, 1.0), (11, 2.0), (50, 5.0), (51, 6.0), (95, 10.0), (99, 10.0), (100, 10.0)],
)
def test_nearest_rank_is_the_smallest_sample_covering_the_percent(
    percent: int, expected: float
) -> None:
    ordered = [float(n) for n in range(1, 11)]

    assert nearest_rank(ordered, percent) == expected


def test_nearest_rank_of_sample_counts_where_floats_would_round_wrongly() -> None:
    # 0.07 * 100 is 7.000000000000001 in floating point; the rank must still be 7.
    ordered = [float(n) for n in range(1, 101)]

    assert nearest_rank(ordered, 7) == 7.0


def test_percentiles_sort_their_samples_and_count_them() -> None:
    assert percentiles([3.0, 1.0, 2.0]) == Percentiles(count=3, p50=2.0, p95=3.0, p99=3.0)
    assert percentiles([7.5]) == Percentiles(count=1, p50=7.5, p95=7.5, p99=7.5)


def test_percentiles_of_nothing_are_none() -> None:
    assert percentiles([]) == Percentiles(count=0, p50=None, p95=None, p99=None)


def test_the_minutes_of_a_window_end_with_the_current_minute() -> None:
    now = datetime(2025, 3, 1, 12, 30, 45, 500000, tzinfo=UTC)

    minutes = Minutes.ending_at(now, 900)

    starts = [minutes.start(minute) for minute in minutes.range()]
    assert len(starts) == 15
    assert starts[0] == datetime(2025, 3, 1, 12, 16, tzinfo=UTC)
    assert starts[-1] == datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(("seconds", "count"), [(0.5, 1), (60, 1), (61, 2), (3600, 60)])
def test_a_window_shows_every_minute_it_touches(seconds: float, count: int) -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    assert Minutes.ending_at(now, seconds).count == count
