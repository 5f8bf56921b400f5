"""`conveyor up` as a real process, for the tests that run the whole platform."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.cli.processes import FAST_SETTINGS, wait_until
from tests.processes import ROOT

STARTUP_SECONDS = 90
STOP_SECONDS = 60


class UpProcess:
    """`python -m conveyor up --port 0 ARGUMENTS...` in `folder`; stdout and stderr in files.

    Its CONVEYOR_* variables are FAST_SETTINGS and `settings`, never the test run's own.
    PYTHONPATH lets it import the demo app (examples/) from the repository while it runs
    in another folder. Without `database_url` it uses the default store, `conveyor.db` in
    `folder`.
    """

    def __init__(
        self,
        folder: Path,
        *arguments: str,
        pythonpath: bool = True,
        database_url: str | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        options = [] if database_url is None else ["--database-url", database_url]
        environment = {**clean_environment(), **FAST_SETTINGS, **(settings or {})}
        if pythonpath:
            environment["PYTHONPATH"] = str(ROOT)
        index = len(list(folder.glob("up-*.out")))
        self.stdout_path = folder / f"up-{index}.out"
        self.stderr_path = folder / f"up-{index}.err"
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "conveyor", *options, "up", "--port", "0", *arguments],
                cwd=folder,
                env=environment,
                stdout=stdout,
                stderr=stderr,
            )

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"stdout:\n{self.stdout()}\nstderr:\n{self.stderr()}"

    def wait_until_up(self) -> Banner:
        def printed() -> Banner | None:
            assert self.process.poll() is None, f"conveyor up exited early:\n{self.output()}"
            return Banner.parse(self.stdout()) if "Press Ctrl-C" in self.stdout() else None

        return wait_until(printed, timeout=STARTUP_SECONDS, message="conveyor up to be ready")

    def worker_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"started worker process (\d+)", self.stderr())]

    def interrupt(self) -> int:
        """Ctrl-C, and the exit code once everything stopped."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=STOP_SECONDS)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_SECONDS)
        for pid in self.worker_pids():  # never leave a worker of a failed test behind
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)


class Banner:
    def __init__(self, url: str, key: str, curl: str) -> None:
        self.url = url
        self.key = key
        self.curl = curl

    @classmethod
    def parse(cls, text: str) -> Banner:
        url = re.search(r"^  API:\s+(\S+)$", text, re.MULTILINE)
        key = re.search(r"^  admin key:\s+(\S+)", text, re.MULTILINE)
        curl = re.search(r"^  (curl .*)$", text, re.MULTILINE)
        assert url, f"no URL in the banner:\n{text}"
        assert key, f"no admin key in the banner:\n{text}"
        assert curl, f"no curl in the banner:\n{text}"
        return cls(url.group(1), key.group(1), curl.group(1))


def clean_environment() -> dict[str, str]:
    """This process's environment without CONVEYOR_* variables or PYTHONPATH."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CONVEYOR_") and name != "PYTHONPATH"
    }


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def tracked_up_processes() -> Iterator[type[UpProcess]]:
    """For a fixture: UpProcess, each one started stopped (and its workers gone) after."""
    started: list[UpProcess] = []

    class Tracked(UpProcess):
        def __init__(self, folder: Path, *arguments: str, **options: Any) -> None:
            super().__init__(folder, *arguments, **options)
            started.append(self)

    yield Tracked
    for process in started:
        process.stop()
