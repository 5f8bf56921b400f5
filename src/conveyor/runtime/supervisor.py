"""The supervisor: `conveyor worker --processes N` runs N worker processes and keeps them up.

Each child runs the worker command itself (with `--processes 1`); the supervisor imports no
backend and holds no connection. It restarts a child that exits on its own, backing off
exponentially (with jitter) when a child keeps dying, so a crash loop costs one restart
every `restart_max_seconds` at most instead of a busy CPU and a flooded log.

Stopping: the first SIGTERM/SIGINT is forwarded to every child as SIGTERM (each finishes
its jobs within its grace period); a child still running `grace_seconds` plus a margin
later is killed. A second signal kills all children at once.

Children run in their own process group, so a Ctrl-C in a terminal reaches them once,
through the supervisor, instead of twice (directly and forwarded), which would turn a
graceful stop into an immediate one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from asyncio.subprocess import Process
from collections.abc import Sequence

from conveyor.runtime.backoff import Backoff, race

log = logging.getLogger(__name__)

# Past the children's own grace period, how long they get to write their last outcomes.
KILL_MARGIN_SECONDS = 10.0
# A child that ran this long was healthy: its next restart starts the backoff afresh.
STABLE_SECONDS = 30.0


class Supervisor:
    def __init__(
        self,
        command: Sequence[str],
        *,
        processes: int,
        grace_seconds: float,
        restart_base_seconds: float = 1.0,
        restart_max_seconds: float = 30.0,
        kill_margin_seconds: float = KILL_MARGIN_SECONDS,
    ) -> None:
        if processes < 1:
            raise ValueError("the supervisor needs processes >= 1")
        self._command = list(command)
        self._processes = processes
        self._stop_deadline_seconds = grace_seconds + kill_margin_seconds
        self._restart_base = restart_base_seconds
        self._restart_max = restart_max_seconds
        self._children: set[Process] = set()
        self._stopping = asyncio.Event()
        self._killing = False

    @property
    def pids(self) -> list[int]:
        """The process ids of the running children."""
        return sorted(child.pid for child in self._children)

    def request_stop(self) -> None:
        """First call: children stop gracefully. Second call: they are killed."""
        if not self._stopping.is_set():
            log.info("supervisor stopping %d worker processes", len(self._children))
            self._stopping.set()
            self._signal_all(signal.SIGTERM)
        elif not self._killing:
            log.warning("supervisor killing %d worker processes", len(self._children))
            self._killing = True
            self._signal_all(signal.SIGKILL)

    async def run(self) -> int:
        """Run the children until asked to stop and all of them have exited."""
        try:
            async with asyncio.TaskGroup() as group:
                for slot in range(self._processes):
                    group.create_task(self._keep_running(slot), name=f"conveyor-child-{slot}")
        finally:
            self._signal_all(signal.SIGKILL)  # only left when cancelled: leave no orphans
        log.info("supervisor stopped")
        return 0

    async def _keep_running(self, slot: int) -> None:
        backoff = Backoff(base_seconds=self._restart_base, max_seconds=self._restart_max)
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = loop.time()
            code = await self._run_child(slot)
            if self._stopping.is_set():
                return
            if loop.time() - started >= STABLE_SECONDS:
                backoff.reset()
            delay = backoff.next_delay()
            log.warning(
                "worker process in slot %d %s; restarting it in %.1f s",
                slot,
                _describe_exit(code),
                delay,
            )
            await race(asyncio.sleep(delay), self._stopping)

    async def _run_child(self, slot: int) -> int | None:
        """Start one child and wait for it to exit; None if it could not be started."""
        try:
            child = await asyncio.create_subprocess_exec(*self._command, process_group=0)
        except OSError as error:
            log.error("cannot start worker process %s: %s", self._command[0], error)
            return None
        self._children.add(child)
        log.info("started worker process %d in slot %d", child.pid, slot)
        try:
            if self._stopping.is_set():  # asked to stop while it was starting
                _send(child, signal.SIGTERM)
            return await self._wait(child)
        finally:
            self._children.discard(child)

    async def _wait(self, child: Process) -> int:
        await race(child.wait(), self._stopping)
        if child.returncode is not None:
            return child.returncode
        try:
            async with asyncio.timeout(self._stop_deadline_seconds):
                return await child.wait()
        except TimeoutError:
            log.warning("worker process %d did not stop in time; killing it", child.pid)
            _send(child, signal.SIGKILL)
            return await child.wait()

    def _signal_all(self, number: signal.Signals) -> None:
        for child in list(self._children):
            _send(child, number)


def _send(child: Process, number: signal.Signals) -> None:
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it exited a moment ago
            child.send_signal(number)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "could not be started"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
