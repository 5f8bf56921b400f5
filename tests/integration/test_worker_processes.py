"""The promise of DESIGN.md §1, checked with real worker processes that are killed,
paused and stopped at chosen points."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from conveyor import Conveyor, Job, JobState
from conveyor.ports import JobFilter
from tests.integration.conftest import StartWorker, wait_until_ready
from tests.processes import ROOT, ConveyorProcess
from tests.waiting import eventually, job_in_state, wait_for_state


async def test_a_job_whose_worker_is_killed_runs_again_with_the_attempt_counted(
    producer: Conveyor, start_worker: StartWorker, tmp_path: Path
) -> None:
    first = start_worker()
    await wait_until_ready(producer, first)
    release = tmp_path / "release"
    job = await producer.enqueue("itest.wait_for_file", {"path": str(release)})
    await wait_for_state(producer, job.id, JobState.RUNNING)
    first.send(signal.SIGKILL)
    first.wait(timeout=10)

    release.touch()
    second = start_worker()
    await wait_until_ready(producer, second)
    done = await wait_for_state(producer, job.id, JobState.COMPLETED)

    assert done.attempt == 2
    assert done.result == {"pid": second.pid, "attempt": 2}
    assert [error.type for error in done.errors] == ["LeaseExpired"]


async def test_a_job_that_kills_its_worker_every_time_ends_failed_after_max_attempts(
    producer: Conveyor, start_worker: StartWorker
) -> None:
    workers = [start_worker()]
    await wait_until_ready(producer, workers[0])
    job = await producer.enqueue("itest.kill_own_worker")

    async def dead_lettered() -> Job | None:
        if not workers[-1].running():  # the job killed it: bring up a replacement, as systemd would
            workers.append(start_worker())
        return await job_in_state(producer, job.id, JobState.FAILED)

    failed = await eventually(dead_lettered, timeout=90, interval=0.1, message="dead letter")
    assert failed.attempt == failed.max_attempts == 3
    assert len(failed.errors) == 3
    assert {error.type for error in failed.errors} == {"LeaseExpired"}


async def test_a_handler_blocking_the_event_loop_past_its_lease_is_not_rescued(
    producer: Conveyor, start_worker: StartWorker, tmp_path: Path
) -> None:
    worker = start_worker()
    await wait_until_ready(producer, worker)
    runs = tmp_path / "runs"
    # 6 s is three times the 2 s lease; the worker's own monitor is running meanwhile.
    job = await producer.enqueue("itest.block_event_loop", {"seconds": 6, "runs_file": str(runs)})
    done = await wait_for_state(producer, job.id, JobState.COMPLETED, timeout=60)

    assert done.attempt == 1
    assert done.errors == ()
    assert runs.read_text().splitlines() == [str(worker.pid)]


async def test_a_paused_worker_cannot_overwrite_the_result_of_the_worker_that_took_over(
    producer: Conveyor, start_worker: StartWorker, tmp_path: Path
) -> None:
    paused = start_worker("--no-monitor")
    await wait_until_ready(producer, paused)
    release = tmp_path / "release"
    job = await producer.enqueue("itest.hold_first_attempt", {"release_path": str(release)})
    await eventually(
        lambda: _exists(Path(f"{release}.started")), timeout=30, message="first attempt"
    )
    paused.send(signal.SIGSTOP)

    rescuer = start_worker()
    await wait_until_ready(producer, rescuer)
    taken_over = await wait_for_state(producer, job.id, JobState.COMPLETED)
    assert taken_over.result == {"pid": rescuer.pid, "attempt": 2}

    release.touch()
    paused.send(signal.SIGCONT)
    await eventually(
        lambda: _contains(paused, job.id), timeout=30, message="the paused worker to give up"
    )
    final = await producer.get(job.id)
    assert final.result == {"pid": rescuer.pid, "attempt": 2}
    assert final.state is JobState.COMPLETED
    assert final.worker == taken_over.worker


async def test_sigterm_lets_a_running_job_finish_inside_the_grace_period(
    producer: Conveyor, start_worker: StartWorker, tmp_path: Path
) -> None:
    worker = start_worker()
    await wait_until_ready(producer, worker)
    release = tmp_path / "release"
    job = await producer.enqueue("itest.wait_for_file", {"path": str(release)})
    await wait_for_state(producer, job.id, JobState.RUNNING)

    worker.send(signal.SIGTERM)
    await eventually(
        lambda: _contains(worker, "stopping: no new jobs"), timeout=10, message="shutdown"
    )
    # Shutting down, but the job has its grace period: the worker waits for it.
    assert worker.running()
    assert (await producer.get(job.id)).state is JobState.RUNNING
    release.touch()

    assert worker.wait(timeout=30) == 0
    done = await producer.get(job.id)
    assert done.state is JobState.COMPLETED
    assert done.attempt == 1
    assert all(info.pid != worker.pid for info in await producer.list_workers())


async def _exists(path: Path) -> bool:
    return path.exists()


async def _contains(worker: ConveyorProcess, text: str) -> bool:
    return text in worker.log()


async def test_fifty_concurrent_enqueues_from_five_processes_with_one_key_make_one_job(
    database_url: str, producer: Conveyor, start_worker: StartWorker
) -> None:
    worker = start_worker()  # registers itest.noop, so the producers can validate it
    await wait_until_ready(producer, worker)
    command = [sys.executable, "-m", "tests.integration.enqueue_burst", database_url, "order-42"]
    bursts = [
        subprocess.Popen([*command, "10"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(5)
    ]
    outputs = [burst.communicate(timeout=60)[0] for burst in bursts]

    assert [burst.returncode for burst in bursts] == [0] * 5
    ids = {line for output in outputs for line in output.split()}
    assert len(ids) == 1
    page = await producer.list_jobs(JobFilter(task="itest.noop"))
    assert [job.id for job in page.items] == list(ids)
