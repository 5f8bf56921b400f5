"""The event loops Conveyor runs on: uvloop where it is installed, asyncio's own otherwise.

A worker's cost per job is mostly event-loop machinery: tasks, futures, callbacks, socket
reads and writes, the hops to its handler loop. Draining no-op jobs on PostgreSQL, paired
runs with the two loops alternating gave 8-16 % less worker CPU per job on uvloop (libuv,
compiled) than on asyncio's loop (largely Python), and a faster drain in every pair
(bench/README.md). So the loops Conveyor creates come from here: those of the CLI's
commands (a worker, the monitor, the API, the rest) and of a worker's handler and
heartbeat threads. The two supervisors, `conveyor worker --processes N` and `conveyor
up`, keep asyncio's loop: they start each child in a process group of its own, which
uvloop's subprocesses cannot do, and do no per-job work.

`CONVEYOR_EVENT_LOOP` chooses: `auto` (uvloop if it can be imported, else asyncio),
`uvloop` (refused at start when it is not installed) or `asyncio`, for handlers whose
libraries need asyncio's own loop. A worker run inside the application's own loop
(`await app.run_worker()`) keeps that loop for claiming and settling; its handler and
heartbeat threads follow the setting.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, get_args

from conveyor.config import EventLoopChoice

T = TypeVar("T")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

CHOICES: tuple[EventLoopChoice, ...] = get_args(EventLoopChoice)


def loop_factory(choice: EventLoopChoice) -> LoopFactory:
    """What creates the loops for `choice`; ImportError if `uvloop` is asked for and missing."""
    if choice not in CHOICES:
        raise ValueError(f"event loop must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "asyncio":
        return _asyncio_loop
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise
        return _asyncio_loop
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def _asyncio_loop() -> asyncio.AbstractEventLoop:
    # The standard library's loop for this platform, whatever policy the process has set.
    return asyncio.DefaultEventLoopPolicy().new_event_loop()


def run(coroutine: Coroutine[Any, Any, T], choice: EventLoopChoice) -> T:
    """`asyncio.run(coroutine)` on a loop of `choice`."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(coroutine)


def loop_name(choice: EventLoopChoice) -> str:
    """The loop `choice` gives here, `uvloop` or `asyncio`: for the logs."""
    return "asyncio" if loop_factory(choice) is _asyncio_loop else "uvloop"
