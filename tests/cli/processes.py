"""Long-running `conveyor` commands (worker, monitor) as real processes, for the CLI tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


class CommandProcess:
    """`python -m conveyor --database-url URL ARGUMENTS...`, its output in a log file."""

    def __init__(self, database_url: str, log_path: Path, *arguments: str) -> None:
        environment = {
            **{key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")},
            **FAST_SETTINGS,
            "PYTHONPATH": str(ROOT),
        }
        command = [sys.executable, "-m", "conveyor", "--database-url", database_url, *arguments]
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def terminate(self, *, timeout: float = 30) -> int:
        """Ask for a graceful stop (SIGTERM, as systemd or Kubernetes do) and wait for it."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Make sure the process is gone, whatever the test left it doing."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._log.close()


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
