"""The event loop setting: uvloop by default where installed, asyncio's loop on request, and
a clear refusal of a loop that cannot be had."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from conveyor.config import Settings, load_settings
from conveyor.core.errors import ConfigError
from conveyor.runtime import event_loops
from conveyor.runtime.worker import WorkerSettings


async def running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@pytest.fixture
def without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine where uvloop is not installed: importing it fails."""
    monkeypatch.setitem(sys.modules, "uvloop", None)


def test_auto_runs_on_uvloop_where_it_is_installed() -> None:
    loop = event_loops.run(running_loop(), "auto")

    assert isinstance(loop, uvloop.Loop)
    assert loop.is_closed()  # run() closes the loop it made, as asyncio.run does
    assert event_loops.loop_name("auto") == "uvloop"
    assert Settings().event_loop == "auto"


def test_asyncio_runs_on_the_standard_librarys_loop_whatever_the_policy() -> None:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        loop = event_loops.run(running_loop(), "asyncio")
    finally:
        asyncio.set_event_loop_policy(None)

    assert type(loop).__module__.startswith("asyncio.")
    assert event_loops.loop_name("asyncio") == "asyncio"


def test_run_returns_the_coroutines_value_and_raises_its_error() -> None:
    async def answer() -> int:
        return 42

    async def fail() -> None:
        raise LookupError("from the coroutine")

    assert event_loops.run(answer(), "uvloop") == 42
    with pytest.raises(LookupError, match="from the coroutine"):
        event_loops.run(fail(), "uvloop")


@pytest.mark.usefixtures("without_uvloop")
def test_without_uvloop_auto_falls_back_to_asyncio() -> None:
    loop = event_loops.run(running_loop(), "auto")

    assert type(loop).__module__.startswith("asyncio.")
    assert event_loops.loop_name("auto") == "asyncio"


@pytest.mark.usefixtures("without_uvloop")
def test_without_uvloop_asking_for_it_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_EVENT_LOOP", "uvloop")

    with pytest.raises(ConfigError, match="CONVEYOR_EVENT_LOOP: uvloop is not installed"):
        load_settings()
    with pytest.raises(ImportError):
        event_loops.loop_factory("uvloop")
    with pytest.raises(ValueError, match=r"event_loop: .*uvloop"):
        WorkerSettings(event_loop="uvloop")


def test_an_unknown_loop_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_EVENT_LOOP", "trio")

    with pytest.raises(ConfigError, match=r"CONVEYOR_EVENT_LOOP: .*'auto', 'uvloop' or 'asyncio'"):
        load_settings()
    with pytest.raises(ValueError, match="must be one of auto, uvloop, asyncio, got 'trio'"):
        event_loops.loop_factory("trio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="event_loop"):
        WorkerSettings(event_loop="trio")  # type: ignore[arg-type]


def test_the_worker_takes_the_loop_from_the_application_settings() -> None:
    settings = Settings(event_loop="asyncio")

    assert WorkerSettings.from_settings(settings).event_loop == "asyncio"
    assert WorkerSettings.from_settings(Settings()).event_loop == "auto"
