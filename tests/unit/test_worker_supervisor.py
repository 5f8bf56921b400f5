"""The supervisor keeps N worker processes running, restarts the ones that die, and
stops them all on SIGTERM (gracefully) or on a second signal (at once)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from conveyor.runtime.supervisor import Supervisor
from tests.waiting import eventually

WAIT = 30.0

# A stand-in for `conveyor worker`: it says when it started, and stops cleanly on SIGTERM
# unless told to ignore it.
CHILD = r"""
import os, pathlib, signal, sys, time
folder, behaviour = pathlib.Path(sys.argv[1]), sys.argv[2]
def stop(number, frame):
    (folder / f"{os.getpid()}.stopped").touch()
    sys.exit(0)
if behaviour == "crash":
    sys.exit(3)
signal.signal(signal.SIGTERM, signal.SIG_IGN if behaviour == "stubborn" else stop)
(folder / f"{os.getpid()}.started").touch()
while True:
    time.sleep(0.05)
"""

SUPERVISOR = r"""
import asyncio, sys
from conveyor.runtime.signals import install_signal_handlers
from conveyor.runtime.supervisor import Supervisor

async def main() -> int:
    supervisor = Supervisor(sys.argv[1:], processes=2, grace_seconds=5)
    install_signal_handlers(supervisor)
    return await supervisor.run()

sys.exit(asyncio.run(main()))
"""


def child_command(folder: Path, behaviour: str = "polite") -> list[str]:
    return [sys.executable, "-c", CHILD, str(folder), behaviour]


def supervisor_for(folder: Path, behaviour: str = "polite", **options: float) -> Supervisor:
    settings = {"grace_seconds": 5.0, "restart_base_seconds": 0.05, "restart_max_seconds": 0.2}
    settings.update(options)
    return Supervisor(
        child_command(folder, behaviour),
        processes=2,
        grace_seconds=settings["grace_seconds"],
        restart_base_seconds=settings["restart_base_seconds"],
        restart_max_seconds=settings["restart_max_seconds"],
        kill_margin_seconds=settings.get("kill_margin_seconds", 10.0),
    )


def pids_with(folder: Path, suffix: str) -> set[int]:
    return {int(path.name.split(".")[0]) for path in folder.glob(f"*.{suffix}")}


async def children_started(folder: Path, count: int) -> set[int]:
    async def enough() -> set[int] | None:
        pids = await asyncio.to_thread(pids_with, folder, "started")
        return pids if len(pids) >= count else None

    return await eventually(enough, timeout=WAIT, message=f"{count} child starts")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_killed_child_is_restarted_and_a_stop_stops_every_child(tmp_path: Path) -> None:
    supervisor = supervisor_for(tmp_path)
    running = asyncio.create_task(supervisor.run())
    try:
        first = await children_started(tmp_path, 2)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        everyone = await children_started(tmp_path, 3)
    finally:
        supervisor.request_stop()
        assert await asyncio.wait_for(running, timeout=WAIT) == 0

    survivors = everyone - {victim}
    assert len(survivors) == 2
    assert pids_with(tmp_path, "stopped") == survivors  # each got SIGTERM and stopped cleanly
    assert not any(alive(pid) for pid in everyone)


async def test_a_child_that_keeps_crashing_is_restarted_with_backoff_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = supervisor_for(tmp_path, "crash")
    running = asyncio.create_task(supervisor.run())

    async def restarted_a_few_times() -> bool:
        restarts = [r for r in caplog.records if "exited with code 3; restarting" in r.message]
        return len(restarts) >= 4

    try:
        await eventually(restarted_a_few_times, timeout=WAIT, message="restarts")
    finally:
        supervisor.request_stop()
        assert await asyncio.wait_for(running, timeout=WAIT) == 0


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    supervisor = supervisor_for(tmp_path, "stubborn", grace_seconds=0.2, kill_margin_seconds=0.2)
    running = asyncio.create_task(supervisor.run())
    children = await children_started(tmp_path, 2)

    supervisor.request_stop()

    assert await asyncio.wait_for(running, timeout=WAIT) == 0
    assert not any(alive(pid) for pid in children)


async def test_a_second_stop_request_kills_the_children_at_once(tmp_path: Path) -> None:
    supervisor = supervisor_for(tmp_path, "stubborn", grace_seconds=600)
    running = asyncio.create_task(supervisor.run())
    children = await children_started(tmp_path, 2)

    supervisor.request_stop()
    supervisor.request_stop()

    assert await asyncio.wait_for(running, timeout=WAIT) == 0
    assert not any(alive(pid) for pid in children)


async def test_sigterm_to_the_supervisor_process_stops_its_children_gracefully(
    tmp_path: Path,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUPERVISOR, *child_command(tmp_path)
    )
    try:
        children = await children_started(tmp_path, 2)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=WAIT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert code == 0
    assert pids_with(tmp_path, "stopped") == children
    assert not any(alive(pid) for pid in children)
