"""SIGTERM and SIGINT ask a worker (or a supervisor) to stop: once gracefully, twice at once."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Protocol

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stoppable(Protocol):
    def request_stop(self) -> None: ...


def install_signal_handlers(
    target: Stoppable, *, signals: Sequence[signal.Signals] = STOP_SIGNALS
) -> Callable[[], None]:
    """Call `target.request_stop()` on each of `signals`; returns a function to undo it.

    Must be called inside the running event loop that `target` runs on.
    """
    loop = asyncio.get_running_loop()

    def received(number: signal.Signals) -> None:
        log.info("received %s", number.name)
        target.request_stop()

    def received_elsewhere(number: int, _frame: object) -> None:
        loop.call_soon_threadsafe(received, signal.Signals(number))

    for number in signals:
        try:
            loop.add_signal_handler(number, received, number)
        except NotImplementedError:  # Windows: no loop signal handlers
            signal.signal(number, received_elsewhere)

    def uninstall() -> None:
        for number in signals:
            try:
                loop.remove_signal_handler(number)
            except NotImplementedError:
                signal.signal(number, signal.SIG_DFL)

    return uninstall
