"""Fixtures for tests that run real worker processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.config import load_settings
from tests.integration.workers import start_worker_process
from tests.processes import ConveyorProcess
from tests.waiting import eventually

StartWorker = Callable[..., ConveyorProcess]


@pytest.fixture
async def producer(database_url: str) -> AsyncIterator[Conveyor]:
    """A client with no task code: it validates against what the workers registered."""
    app = Conveyor(load_settings(database_url=database_url))
    yield app
    await app.close()


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path) -> Iterator[StartWorker]:
    started: list[ConveyorProcess] = []

    def start(*arguments: str, settings: dict[str, str] | None = None) -> ConveyorProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        worker = start_worker_process(database_url, log_path, *arguments, settings=settings)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


async def wait_until_ready(producer: Conveyor, worker: ConveyorProcess) -> None:
    async def registered() -> bool:
        assert worker.running(), f"worker exited early:\n{worker.log()}"
        return any(info.pid == worker.pid for info in await producer.list_workers())

    await eventually(registered, timeout=30, message=f"worker {worker.pid} to register")
