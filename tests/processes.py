"""`conveyor` commands (worker, monitor) as real processes, for the tests that need them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class ConveyorProcess:
    """`python -m conveyor --database-url URL ARGUMENTS...`, its output in a log file.

    Only `settings` (CONVEYOR_* variables) reach it: the caller's own CONVEYOR_*
    environment is not inherited, so a developer's shell cannot change a test.
    """

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *arguments: str,
        settings: Mapping[str, str],
    ) -> None:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        environment = {**inherited, **settings, "PYTHONPATH": str(ROOT)}
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

    def send(self, signal_number: signal.Signals) -> None:
        self.process.send_signal(signal_number)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def terminate(self, *, timeout: float = 30) -> int:
        """Ask for a graceful stop (SIGTERM, as systemd or Kubernetes do) and wait for it."""
        self.send(signal.SIGTERM)
        return self.wait(timeout)

    def stop(self) -> None:
        """Make sure the process is gone, whatever state the test left it in."""
        if self.running():
            self.send(signal.SIGCONT)  # a SIGSTOPped process must wake to die cleanly
            self.process.kill()
            self.process.wait(timeout=30)
        self._log.close()
