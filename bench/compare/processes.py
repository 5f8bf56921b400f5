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
    """SIGTERM each started process (supervising CLIs pass it on to their children as they
    see fit), then SIGKILL whatever is left of its group after STOP_SECONDS."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
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


def memory_bytes(processes: Sequence[subprocess.Popen[bytes]]) -> int:
    """The memory of these processes and all their descendants (Linux /proc), each counted
    as its proportional set size: pages a forked child still shares with its parent count
    once between them, so that forking systems are not charged twice for them."""
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
        total += _pss_of(pid)
        pending.extend(children.get(pid, ()))
    return total


def _parent_of(entry: Path) -> int | None:
    try:
        stat = (entry / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: parse after the last ")".
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def _pss_of(pid: int) -> int:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0  # gone meanwhile
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024  # kB
    return 0
