"""The API and the worker processes of `conveyor up`, started and stopped as one.

Start: the workers are spawned, the API serves on its bound socket, and the platform is
ready once the API answers its readiness check and every worker has registered (so the
printed `curl` works at once: the API validates submissions against registered tasks).

Stop, on the first SIGINT/SIGTERM: the API stops accepting requests and the workers get
SIGTERM, finishing their running jobs within the grace period. A second signal stops both
at once. A worker that dies on its own stops everything too, and the command fails.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from conveyor.cli.errors import CommandFailed
from conveyor.cli.serving import ApiServer, wait_until_ready
from conveyor.cli.worker_processes import Exit, WorkerProcesses
from conveyor.client import Conveyor
from conveyor.runtime.signals import install_signal_handlers
from conveyor.runtime.supervisor import KILL_MARGIN_SECONDS

logger = logging.getLogger("conveyor.cli")

# How long the API and the workers get to come up before `up` gives up on them.
STARTUP_TIMEOUT_SECONDS = 60.0
REGISTRATION_POLL_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class PlatformPlan:
    worker_command: Sequence[str]
    workers: int


class Platform:
    """The API server and the worker processes, run by one event loop until stopped."""

    def __init__(self, app: Conveyor, listener: socket.socket, plan: PlatformPlan) -> None:
        # Imported here: FastAPI is slow to import, and no other command (nor any worker
        # process) needs it.
        from conveyor.api.app import create_app

        self._app = app
        self._listener = listener
        self._server = ApiServer(create_app(app.settings, conveyor=app), listener)
        self._workers = WorkerProcesses(
            plan.worker_command,
            count=plan.workers,
            stop_deadline_seconds=app.settings.shutdown_grace_seconds + KILL_MARGIN_SECONDS,
        )
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        """A signal: the first stops everything gracefully, any later one at once."""
        if not self._stopping.is_set():
            logger.info("stopping: the API stops accepting, workers finish their running jobs")
            self._stopping.set()
            return
        logger.warning("stopping at once")
        self._server.request_stop()  # its second stop request: open requests are dropped
        self._workers.signal_all(signal.SIGTERM)  # a worker's second: release jobs now

    async def run(self, announce: Callable[[], None]) -> None:
        """Run until a signal (returns) or a failure (raises); `announce` once ready."""
        uninstall = install_signal_handlers(self)
        try:
            await self._run(announce)
        finally:
            uninstall()

    async def _run(self, announce: Callable[[], None]) -> None:
        try:
            await self._workers.start()
        except BaseException:
            self._workers.kill()
            raise
        serving = asyncio.create_task(self._server.serve(), name="conveyor-api")
        worker_exit = asyncio.create_task(self._workers.first_exit(), name="worker-exit")
        stop_requested = asyncio.create_task(self._stopping.wait(), name="stop-requested")
        startup = asyncio.create_task(self._until_ready(), name="startup")
        try:
            finished = await _first_of(stop_requested, worker_exit, serving, startup)
            if finished is startup:
                startup.result()  # a startup that timed out raises here
                announce()
                finished = await _first_of(stop_requested, worker_exit, serving)
        finally:
            self._stopping.set()  # from here on, a signal means "at once"
            for task in (startup, stop_requested):
                task.cancel()
            await self._shutdown(serving)
        _raise_unless_stopped(finished, stop_requested, worker_exit, serving)

    async def _until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        await wait_until_ready(self._listener, timeout=STARTUP_TIMEOUT_SECONDS)
        expected = set(self._workers.pids)
        host = socket.gethostname()
        while True:
            workers = await self._app.list_workers()
            if expected <= {worker.pid for worker in workers if worker.host == host}:
                return
            if time.monotonic() >= deadline:
                raise CommandFailed(
                    f"the worker processes did not register within {STARTUP_TIMEOUT_SECONDS:g} s"
                )
            await asyncio.sleep(REGISTRATION_POLL_SECONDS)

    async def _shutdown(self, serving: asyncio.Task[None]) -> None:
        self._server.request_stop()
        exits, _ = await asyncio.gather(self._workers.stop(), asyncio.wait({serving}))
        for ended in exits:
            _log_exit(ended)
        logger.info("stopped")


async def _first_of(*tasks: asyncio.Task[object]) -> asyncio.Task[object]:
    """The first of `tasks` to finish; when several have, the one listed first."""
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    return next(task for task in tasks if task in done)


def _raise_unless_stopped(
    finished: asyncio.Task[object],
    stop_requested: asyncio.Task[object],
    worker_exit: asyncio.Task[Exit],
    serving: asyncio.Task[None],
) -> None:
    """Why the platform ended, as an error, unless a signal ended it."""
    serving_error = serving.exception() if serving.done() and not serving.cancelled() else None
    if finished is stop_requested:
        return
    if finished is worker_exit:
        ended = worker_exit.result()
        raise CommandFailed(f"{ended.describe()} unexpectedly; stopped the API and the workers")
    if serving_error is not None:
        raise serving_error
    raise CommandFailed("the API stopped unexpectedly; stopped the workers")


def _log_exit(ended: Exit) -> None:
    # A worker stopped before it could install its signal handlers dies of the SIGTERM.
    if ended.returncode in (0, -signal.SIGTERM):
        logger.info("%s", ended.describe())
    else:
        logger.warning("%s", ended.describe())
