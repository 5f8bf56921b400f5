"""`conveyor worker` and `conveyor monitor`: the long-running worker processes."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import Annotated

import typer

from conveyor.cli import heap
from conveyor.cli.facade import application, check_store, describe_database, global_options, run
from conveyor.cli.logs import LogLevel, LogLevelOption, configure_logging
from conveyor.client import Conveyor
from conveyor.runtime import event_loops
from conveyor.runtime.signals import install_signal_handlers
from conveyor.runtime.supervisor import Supervisor

logger = logging.getLogger("conveyor.cli")


def parse_queues(text: str | None) -> list[str]:
    if text is None:
        return []
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise typer.BadParameter(
            f"expected queue names separated by commas, like 'math,reports', got {text!r}",
            param_hint="'--queues'",
        )
    return names


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    app_spec: str
    queues: tuple[str, ...]
    concurrency: int | None
    with_monitor: bool
    log_level: LogLevel

    def child_command(self, database_url: str | None) -> list[str]:
        """The command line of one supervised worker process: this one, with one process."""
        command = [sys.executable, "-m", "conveyor"]
        if database_url is not None:
            command += ["--database-url", database_url]
        command += ["worker", "--app", self.app_spec, "--processes", "1"]
        command += ["--log-level", self.log_level.value]
        if self.queues:
            command += ["--queues", ",".join(self.queues)]
        if self.concurrency is not None:
            command += ["--concurrency", str(self.concurrency)]
        if not self.with_monitor:
            command.append("--no-monitor")
        return command


def worker(
    ctx: typer.Context,
    *,
    app_spec: Annotated[
        str,
        typer.Option(
            "--app", metavar="MODULE:ATTRIBUTE", help="The Conveyor app whose tasks to run."
        ),
    ],
    queues: Annotated[
        str | None,
        typer.Option(metavar="A,B", help="Only claim from these queues (default: every queue)."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help="Jobs one process runs at once (default: CONVEYOR_CONCURRENCY, or 10)."
        ),
    ] = None,
    processes: Annotated[
        int, typer.Option(min=1, help="Worker processes to run, under one supervisor.")
    ] = 1,
    no_monitor: Annotated[
        bool, typer.Option("--no-monitor", help="Do not run the maintenance loops here.")
    ] = False,
    log_level: LogLevelOption = LogLevel.INFO,
) -> None:
    """Run the app's tasks until SIGTERM or Ctrl-C, then stop gracefully."""
    options = WorkerOptions(
        app_spec=app_spec,
        queues=tuple(parse_queues(queues)),
        concurrency=concurrency,
        with_monitor=not no_monitor,
        log_level=log_level,
    )
    configure_logging(log_level)
    app = application(ctx, app_spec)
    if processes > 1:
        # Checked here first: a bad --app, setting or store address fails once, with one
        # message, instead of in every child that the supervisor would then keep restarting.
        run(app, check_store)
        supervise(app, options.child_command(global_options(ctx).database_url), processes)
    else:
        run_one_worker(app, options)


def run_one_worker(app: Conveyor, options: WorkerOptions) -> None:
    logger.info(
        "worker starting: app %s, queues %s, concurrency %s, monitor %s, store %s, loop %s",
        options.app_spec,
        ",".join(options.queues) or "all",
        options.concurrency or app.settings.concurrency,
        "on" if options.with_monitor else "off",
        describe_database(app.settings.database_url),
        event_loops.loop_name(app.settings.event_loop),
    )
    run(app, lambda app: serve(app, options))


async def serve(app: Conveyor, options: WorkerOptions) -> None:
    """`app.run_worker()`, with the process's start-up heap frozen once it is ready."""
    worker = await app.build_worker(
        queues=options.queues, concurrency=options.concurrency, with_monitor=options.with_monitor
    )
    uninstall = install_signal_handlers(worker)
    freezing = asyncio.create_task(heap.freeze_once(worker.ready))
    try:
        await worker.run()
    finally:
        freezing.cancel()
        uninstall()


def supervise(app: Conveyor, child_command: list[str], processes: int) -> None:
    # The supervisor adds its own margin to the children's grace period before killing one.
    supervisor = Supervisor(
        child_command, processes=processes, grace_seconds=app.settings.shutdown_grace_seconds
    )

    async def run_until_stopped() -> None:
        uninstall = install_signal_handlers(supervisor)
        try:
            await supervisor.run()
        finally:
            uninstall()

    logger.info("supervising %d worker processes", processes)
    # asyncio's own loop: uvloop cannot start children in process groups of their own.
    asyncio.run(run_until_stopped())


def monitor(
    ctx: typer.Context,
    app_spec: Annotated[
        str | None,
        typer.Option(
            "--app",
            metavar="MODULE:ATTRIBUTE",
            help="Optional: the monitor needs no task code, only the app's settings.",
        ),
    ] = None,
    log_level: LogLevelOption = LogLevel.INFO,
) -> None:
    """Run only the maintenance loops (promote, rescue, prune), until SIGTERM or Ctrl-C.

    Every worker runs them too unless started with --no-monitor; leadership makes any
    number of monitors safe.
    """
    configure_logging(log_level)
    app = application(ctx, app_spec)
    logger.info("monitor starting: store %s", describe_database(app.settings.database_url))
    run(app, lambda app: app.run_monitor())
    logger.info("monitor stopped")
