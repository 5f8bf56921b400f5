"""Backing off from an unreachable store: delays grow, are capped, never near zero; and
waits that end early when a stop is requested."""

from __future__ import annotations

import asyncio
import logging

import pytest

from conveyor import outages
from conveyor.runtime.backoff import Backoff, Outage, race


def test_delays_double_up_to_the_cap_at_the_top_of_the_jitter() -> None:
    backoff = Backoff(base_seconds=0.1, max_seconds=1.0, jitter=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_a_delay_is_never_shorter_than_the_base_so_a_loop_never_spins() -> None:
    backoff = Backoff(base_seconds=0.1, max_seconds=10.0, jitter=lambda: 0.0)
    assert {backoff.next_delay() for _ in range(5)} == {0.1}


def test_reset_starts_again_from_the_base() -> None:
    backoff = Backoff(base_seconds=0.1, max_seconds=10.0, jitter=lambda: 1.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.1)


def test_an_outage_is_logged_when_it_starts_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage(logging.getLogger("test.outage"), "claiming")
    for _ in range(5):
        outage.failed(ConnectionError("refused"))
    outage.recovered()
    outage.recovered()

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].startswith("claiming: store unavailable")
    assert "available again" in warnings[1]
    assert "5 failed attempts" in warnings[1]


async def test_race_returns_the_result_when_the_work_ends_first() -> None:
    stop = asyncio.Event()

    async def work() -> str:
        return "done"

    assert await race(work(), stop) == "done"


async def test_race_cancels_the_work_when_stop_is_requested() -> None:
    stop, started, cancelled = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def forever() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    waiting = asyncio.create_task(race(forever(), stop))
    await started.wait()
    stop.set()

    assert await waiting is None
    assert cancelled.is_set()


async def test_race_gives_up_after_its_timeout() -> None:
    assert await race(asyncio.Event().wait(), asyncio.Event(), timeout=0.01) is None


def test_a_breaker_keeps_callers_away_for_the_backoff_and_logs_the_outage_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    breaker = outages.Breaker(
        outages.Outage(logging.getLogger("test.breaker"), "the thing", back_level=logging.INFO),
        outages.Backoff(base_seconds=60.0, max_seconds=60.0),
    )
    before = breaker.closed_for_now

    breaker.failed(ConnectionError("refused"))
    breaker.failed(ConnectionError("refused again"))
    during = breaker.closed_for_now
    breaker.succeeded()

    assert (before, during) == (False, True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    [recovery] = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert warnings == ["the thing unavailable, retrying: refused"]
    assert "2 failed attempts" in recovery
