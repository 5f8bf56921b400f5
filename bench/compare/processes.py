"""Worker processes: started in process groups of their own, measured, and always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

STOP_SECONDS = 15.0
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def started(
    commands: Sequence[Sequence[str]], environment: Mapping[str, str], log: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start each command in a new session (its own process group); stop every group after."""
    env = {**os.environ, **environment, "PYTHONPATH": str(ROOT)}
    processes: list[subprocess.Popen[bytes]] = []
    with log.open("ab") as output:
        try:
            for command in commands:  # appended one by one: a failed start stops the others
                process = subprocess.Popen(
                    list(command),
                    cwd=ROOT,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                processes.append(process)
            yield processes
        finally:
            stop(processes)


def stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every group, then SIGKILL what is left after STOP_SECONDS."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        _signal_group(process, signal.SIGKILL)  # children of a stopped parent, too
        process.wait()


def _signal_group(process: subprocess.Popen[bytes], number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, number)


def resident_bytes(processes: Sequence[subprocess.Popen[bytes]]) -> int:
    """The resident memory of these processes and all their descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent_of(entry)
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    total = 0
    pending = [process.pid for process in processes]
    while pending:
        pid = pending.pop()
        total += _rss_of(pid)
        pending.extend(children.get(pid, ()))
    return total


def _parent_of(entry: Path) -> int | None:
    try:
        stat = (entry / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: parse after the last ")".
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def _rss_of(pid: int) -> int:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * PAGE_SIZE
