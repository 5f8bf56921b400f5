"""Settings and waiting for the CLI tests that run real `conveyor` processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")

# Short intervals, so that what the tests wait for happens within a second or two.
FAST_SETTINGS = {
    "CONVEYOR_LEASE_SECONDS": "5",
    "CONVEYOR_HEARTBEAT_SECONDS": "0.5",
    "CONVEYOR_MONITOR_INTERVAL_SECONDS": "0.2",
    "CONVEYOR_POLL_INTERVAL_SECONDS": "0.1",
    "CONVEYOR_SHUTDOWN_GRACE_SECONDS": "5",
}


def wait_until(
    check: Callable[[], T | None], *, timeout: float, message: str, interval: float = 0.1
) -> T:
    """The first truthy value of `check()`, polled until a deadline; never a bare sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
