"""How every system's no-op task says it ran: one timestamp line per run, appended to a
file of its own process, the same few microseconds of work for every system.

The task side (`record`) runs inside each system's workers; the reading side (`Completions`)
in `measure`. Timestamps are `time.time()` (the same clock in every process of the machine).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

DIRECTORY_VARIABLE = "CONVEYOR_BENCH_COMPLETIONS"

_files: dict[int, int] = {}  # pid -> descriptor (a forked child opens its own)


def record() -> None:
    """Called by every system's no-op task: appends the current time to this process's file.

    O_APPEND writes of one short line are atomic, so threads of one process may share it.
    """
    pid = os.getpid()
    descriptor = _files.get(pid)
    if descriptor is None:
        directory = os.environ[DIRECTORY_VARIABLE]
        path = os.path.join(directory, f"{pid}.txt")
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _files[pid] = descriptor
    os.write(descriptor, f"{time.time():.6f}\n".encode())


class Completions:
    """Reads what the tasks recorded in `directory`, incrementally."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[Path, int] = {}
        self.times: list[float] = []

    def refresh(self) -> int:
        """Read the lines written since the last call; return how many runs there are now."""
        for path in sorted(self.directory.glob("*.txt")):
            offset = self._offsets.get(path, 0)
            with path.open("rb") as stream:
                stream.seek(offset)
                chunk = stream.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits
            self._offsets[path] = offset + len(complete)
            self.times.extend(float(line) for line in complete.split())
        return len(self.times)

    def clear(self) -> None:
        for path in self.directory.glob("*.txt"):
            path.unlink()
        self._offsets.clear()
        self.times.clear()
