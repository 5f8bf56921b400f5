"""The worker processes that `conveyor up` runs beside its API, and how they stop.

Unlike the supervisor of `conveyor worker --processes N`, this never restarts a child: `up`
is for a developer at a terminal, who should see a crashing worker at once rather than have
it hidden by restarts. Children run in their own process group, so a Ctrl-C at the
terminal reaches them once, forwarded by `up` as SIGTERM, and a graceful stop stays graceful.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from asyncio.subprocess import Process
from collections.abc import Sequence
from dataclasses import dataclass

from conveyor.cli.errors import CommandFailed

logger = logging.getLogger("conveyor.cli")


@dataclass(frozen=True, slots=True)
class Exit:
    """How one child ended."""

    pid: int
    returncode: int

    def describe(self) -> str:
        if self.returncode >= 0:
            return f"worker process {self.pid} exited with code {self.returncode}"
        try:
            name = signal.Signals(-self.returncode).name
        except ValueError:
            name = f"signal {-self.returncode}"
        return f"worker process {self.pid} was killed by {name}"


class WorkerProcesses:
    """`count` copies of `command`, started together and stopped together."""

    def __init__(self, command: Sequence[str], *, count: int, stop_deadline_seconds: float) -> None:
        self._command = list(command)
        self._count = count
        self._stop_deadline_seconds = stop_deadline_seconds
        self._exits: dict[Process, asyncio.Task[Exit]] = {}

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self._exits]

    async def start(self) -> None:
        for _ in range(self._count):
            try:
                child = await asyncio.create_subprocess_exec(*self._command, process_group=0)
            except OSError as error:
                raise CommandFailed(f"cannot start a worker process: {error}") from None
            self._exits[child] = asyncio.create_task(_exit_of(child), name=f"worker-{child.pid}")
            logger.info("started worker process %d", child.pid)

    async def first_exit(self) -> Exit:
        """How the first child to end ended (all of them were started by then)."""
        done, _ = await asyncio.wait(self._exits.values(), return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()

    def signal_all(self, number: signal.Signals) -> None:
        for child in self._exits:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # it ended a moment ago
                    child.send_signal(number)

    async def stop(self) -> list[Exit]:
        """SIGTERM every child, wait for them to finish their jobs, kill any that overstay."""
        self.signal_all(signal.SIGTERM)
        exits = self._exits.values()
        if not exits:
            return []
        _, overdue = await asyncio.wait(exits, timeout=self._stop_deadline_seconds)
        if overdue:
            logger.warning("%d worker process(es) did not stop in time; killing", len(overdue))
            self.signal_all(signal.SIGKILL)
        return list(await asyncio.gather(*exits))

    def kill(self) -> None:
        """Leave no child behind (for paths that cannot wait, such as a failed start)."""
        self.signal_all(signal.SIGKILL)


async def _exit_of(child: Process) -> Exit:
    return Exit(child.pid, await child.wait())
