"""Real `conveyor worker` processes for the integration tests, with short leases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]

# Short intervals so recovery happens in seconds (DESIGN.md §8: they must work).
FAST_SETTINGS = {
    "CONVEYOR_LEASE_SECONDS": "2",
    "CONVEYOR_HEARTBEAT_SECONDS": "0.5",
    "CONVEYOR_MONITOR_INTERVAL_SECONDS": "0.5",
    "CONVEYOR_POLL_INTERVAL_SECONDS": "0.2",
    "CONVEYOR_RETRY_BASE_SECONDS": "0.1",
    "CONVEYOR_RETRY_MAX_SECONDS": "0.5",
    "CONVEYOR_SHUTDOWN_GRACE_SECONDS": "10",
}


class WorkerProcess:
    """One `conveyor worker` process; its combined output goes to a log file."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        arguments: tuple[str, ...] = (),
        settings: dict[str, str] | None = None,
    ) -> None:
        environment = {
            **os.environ,
            **FAST_SETTINGS,
            **(settings or {}),
            "CONVEYOR_DATABASE_URL": database_url,
            "PYTHONPATH": str(ROOT),
        }
        command = [
            sys.executable,
            "-m",
            "conveyor",
            "worker",
            "--app",
            "tests.integration.tasks:app",
            *arguments,
        ]
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, signal_number: signal.Signals) -> None:
        self.process.send_signal(signal_number)

    def exited(self) -> bool:
        return self.process.poll() is not None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Make sure the process is gone, whatever state the test left it in."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=30)
        self._log.close()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
