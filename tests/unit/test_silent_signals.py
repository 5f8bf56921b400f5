"""SilentSignals, for deployments without Redis: nothing is sent, listeners end at close."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.brokers.silent_signals import SilentSignals
from conveyor.core.job import Progress
from conveyor.ports import CancelNotice, ProgressNotice, Signals

WAIT = 10.0


async def test_publishing_does_nothing_and_listeners_end_only_at_close() -> None:
    signals: Signals = SilentSignals()

    async with signals.cancellations() as cancels, signals.follow_progress("job-1") as progress:
        await signals.publish_cancel(CancelNotice("job-1", 1))
        await signals.publish_progress([ProgressNotice("job-1", 1, Progress(50.0))])
        waiting = [asyncio.ensure_future(anext(cancels)), asyncio.ensure_future(anext(progress))]
        await asyncio.sleep(0)  # let both start waiting: neither may end before close
        assert not any(task.done() for task in waiting)

        await signals.close()

        for task in waiting:
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(task, WAIT)
