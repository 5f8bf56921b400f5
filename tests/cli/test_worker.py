"""`conveyor worker` and `conveyor monitor` as real processes: start, run jobs, stop cleanly."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from conveyor import JobState
from tests.cli.conftest import TEST_APP, Cli, StoreHelper
from tests.cli.processes import FAST_SETTINGS, wait_until
from tests.processes import ConveyorProcess

pytestmark = pytest.mark.slow

StartCommand = Callable[..., ConveyorProcess]


@pytest.fixture
def start_command(sqlite_url: str, tmp_path: Path) -> Iterator[StartCommand]:
    started: list[ConveyorProcess] = []

    def start(*arguments: str, settings: Mapping[str, str] = FAST_SETTINGS) -> ConveyorProcess:
        log_path = tmp_path / f"command-{len(started)}.log"
        process = ConveyorProcess(sqlite_url, log_path, *arguments, settings=settings)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def worker_pids(store_helper: StoreHelper) -> set[int]:
    return {worker.pid for worker in store_helper.call(lambda app: app.list_workers())}


def wait_for_workers(store_helper: StoreHelper, process: ConveyorProcess, count: int) -> set[int]:
    def registered() -> set[int] | None:
        assert process.running(), f"the command exited early:\n{process.log()}"
        pids = worker_pids(store_helper)
        return pids if len(pids) >= count else None

    return wait_until(registered, timeout=60, message=f"{count} worker(s) to register")


@pytest.mark.parametrize("event_loop", ["auto", "asyncio"])
def test_a_worker_runs_enqueued_jobs_and_stops_gracefully_on_sigterm(
    cli: Cli, store_helper: StoreHelper, start_command: StartCommand, event_loop: str
) -> None:
    settings = {**FAST_SETTINGS, "CONVEYOR_EVENT_LOOP": event_loop}
    worker = start_command("worker", "--app", TEST_APP, "--concurrency", "2", settings=settings)
    assert wait_for_workers(store_helper, worker, 1) == {worker.pid}

    result = cli("enqueue", "cli.add", "--args", '{"a": 2, "b": 3}', "--wait",
                 "--wait-timeout", "60")  # fmt: skip

    assert result.exit_code == 0, result.output + worker.log()
    assert result.stdout.splitlines()[1] == "5"
    assert worker.terminate() == 0, worker.log()
    assert "worker starting" in worker.log()
    assert f"loop {'asyncio' if event_loop == 'asyncio' else 'uvloop'}" in worker.log()
    assert "Traceback" not in worker.log()


def test_a_worker_process_freezes_its_start_up_heap_once_ready(
    cli: Cli, store_helper: StoreHelper, start_command: StartCommand
) -> None:
    """Full collections skip what start-up made (cli/heap.py): it froze a whole app's worth."""
    worker = start_command("worker", "--app", TEST_APP)
    wait_for_workers(store_helper, worker, 1)

    result = cli("enqueue", "cli.frozen_objects", "--wait", "--wait-timeout", "60")

    assert result.exit_code == 0, result.output + worker.log()
    assert int(result.stdout.splitlines()[1]) > 10_000


def test_watch_follows_a_job_that_a_worker_runs(
    cli: Cli, store_helper: StoreHelper, start_command: StartCommand
) -> None:
    worker = start_command("worker", "--app", TEST_APP)
    wait_for_workers(store_helper, worker, 1)
    enqueued = cli("enqueue", "cli.stages", "--args", '{"seconds": 0.5}')
    job_id = enqueued.stdout.strip()

    result = cli("watch", job_id)

    assert result.exit_code == 0, result.output + worker.log()
    assert result.stdout.splitlines()[-1] == f'job {job_id} completed: "rendered"'


def test_a_worker_only_claims_from_its_queues(
    cli: Cli, store_helper: StoreHelper, start_command: StartCommand
) -> None:
    worker = start_command("worker", "--app", TEST_APP, "--queues", "arithmetic")
    wait_for_workers(store_helper, worker, 1)
    elsewhere = store_helper.enqueue("cli.stages", {"seconds": 0})

    result = cli("enqueue", "cli.add", "--args", '{"a": 1, "b": 1}', "--wait",
                 "--wait-timeout", "60")  # fmt: skip

    assert result.exit_code == 0, result.output + worker.log()
    assert store_helper.get(elsewhere.id).state is JobState.QUEUED


def test_processes_runs_that_many_workers_under_one_supervisor(
    store_helper: StoreHelper, start_command: StartCommand
) -> None:
    supervisor = start_command("worker", "--app", TEST_APP, "--processes", "2")

    pids = wait_for_workers(store_helper, supervisor, 2)

    assert len(pids) == 2
    assert supervisor.pid not in pids
    assert supervisor.terminate() == 0, supervisor.log()


def test_a_monitor_alone_promotes_a_scheduled_job(
    cli: Cli, store_helper: StoreHelper, start_command: StartCommand
) -> None:
    job = store_helper.enqueue("cli.add", {"a": 1, "b": 1}, delay=0.5)
    assert job.state is JobState.SCHEDULED
    monitor = start_command("monitor")

    def promoted() -> bool:
        assert monitor.running(), monitor.log()
        return store_helper.get(job.id).state is JobState.QUEUED

    wait_until(promoted, timeout=60, message="the monitor to promote the job")
    assert monitor.terminate() == 0, monitor.log()


def test_the_demo_app_runs_from_the_repository_root(
    cli: Cli, store_helper: StoreHelper, start_command: StartCommand
) -> None:
    """README.md's first commands: a worker for examples.app, then an enqueue that waits."""
    worker = start_command("worker", "--app", "examples.app:app")
    wait_for_workers(store_helper, worker, 1)

    result = cli("enqueue", "math.square_sum", "--args", '{"numbers": [1, 2, 3]}', "--wait",
                 "--wait-timeout", "60")  # fmt: skip

    assert result.exit_code == 0, result.output + worker.log()
    assert result.stdout.splitlines()[1] == "14.0"  # a float result stays a float
