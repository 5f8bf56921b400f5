"""The promise of DESIGN.md §1 with Redis as the broker, checked against real faults: Redis
restarted empty or gone for a while, and processes killed at the two steps where a job id
is outside both Redis and a worker's hands (between pop and claim, between commit and
publish). Workers and the API are real processes; each test has its own PostgreSQL
database and its own Redis server, which it kills and starts again at will.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor import Conveyor, Job, JobState
from conveyor.brokers.faults import EXIT_AFTER_POP, EXIT_BEFORE_PUBLISH, FAULT_EXIT_CODE
from conveyor.config import load_settings
from conveyor.core.job import DEFAULT_QUEUE
from conveyor.ports import JobFilter
from tests.backends import redis_command
from tests.integration import tasks
from tests.integration.conftest import StartWorker, wait_until_ready
from tests.integration.workers import FAST_SETTINGS
from tests.own_redis import OwnRedis
from tests.processes import ConveyorProcess
from tests.waiting import eventually, wait_for_state

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PREFIX = "conveyor-faults:"
ADMIN_KEY = "redis-faults-admin-key"
RECORD_RUN = "itest.record_run"

# Long enough that 2 workers of 10 slots need seconds for a run: Redis restarts mid-run.
RUN_JOBS = 2000
RUN_BATCH = 500
RUN_JOB_SECONDS = 0.05
RESTART_AFTER_COMPLETED = 200

OUTAGE_SECONDS = 10.0

# The reconciler republishes a job Redis lacks once it has been `queued` for a 2 s grace,
# at the monitor leader's next pass (every 0.5 s with FAST_SETTINGS): well inside this.
RECONCILED_WITHIN_SECONDS = 10.0

StartConveyor = Callable[..., ConveyorProcess]


@pytest.fixture
def database_url(postgres_url: str) -> str:
    return postgres_url


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    with OwnRedis() as server:
        yield server


@pytest.fixture
def redis_settings(own_redis: OwnRedis) -> dict[str, str]:
    return {"CONVEYOR_REDIS_URL": own_redis.url, "CONVEYOR_REDIS_PREFIX": PREFIX}


@pytest.fixture
async def producer(database_url: str, own_redis: OwnRedis) -> AsyncIterator[Conveyor]:
    """A client with no task code that publishes what it submits to the test's Redis."""
    settings = load_settings(
        database_url=database_url, redis_url=own_redis.url, redis_prefix=PREFIX
    )
    app = Conveyor(settings)
    yield app
    await app.close()


@pytest.fixture
def start_redis_worker(start_worker: StartWorker, redis_settings: dict[str, str]) -> StartWorker:
    def start(*arguments: str, settings: dict[str, str] | None = None) -> ConveyorProcess:
        return start_worker(*arguments, settings={**redis_settings, **(settings or {})})

    return start


@pytest.fixture
def start_conveyor(
    database_url: str, redis_settings: dict[str, str], tmp_path: Path
) -> Iterator[StartConveyor]:
    """`conveyor COMMAND ...` (api, monitor) with the Redis broker and an admin key."""
    started: list[ConveyorProcess] = []

    def start(*arguments: str, settings: dict[str, str] | None = None) -> ConveyorProcess:
        every_setting = {**FAST_SETTINGS, **redis_settings, "CONVEYOR_ADMIN_KEY": ADMIN_KEY}
        log_path = tmp_path / f"{arguments[0]}-{len(started)}.log"
        process = ConveyorProcess(
            database_url, log_path, *arguments, settings={**every_setting, **(settings or {})}
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


async def mark_redis_complete(start_conveyor: StartConveyor, server: OwnRedis) -> None:
    """Run a monitor until it has marked Redis complete (the epoch set), as in any deployment
    that has run for a while, then stop it. From then on workers claim only what Redis hands
    them, so a lost id comes back only through the reconciler; and with no monitor running
    until the test starts a worker, no reconciler republishes a lost id before the test has
    seen it lost."""
    monitor = start_conveyor("monitor")

    async def filled() -> bool:
        assert monitor.running(), f"conveyor monitor exited early:\n{monitor.log()}"
        return await epoch_set(server)

    await eventually(filled, timeout=30, message="the monitor to mark Redis complete")
    assert await asyncio.to_thread(monitor.terminate) == 0, monitor.log()


# Tests -----------------------------------------------------------------------------------


async def test_redis_restarted_empty_mid_run_loses_no_job_and_runs_none_twice(
    own_redis: OwnRedis, producer: Conveyor, start_redis_worker: StartWorker, tmp_path: Path
) -> None:
    workers = [start_redis_worker(), start_redis_worker()]
    for worker in workers:
        await wait_until_ready(producer, worker)
    runs = tmp_path / "runs"
    arguments = {"runs_file": str(runs), "seconds": RUN_JOB_SECONDS}
    jobs: list[Job] = []
    for _ in range(RUN_JOBS // RUN_BATCH):
        jobs += await producer.enqueue_many(RECORD_RUN, [arguments] * RUN_BATCH)

    await eventually(
        lambda: completed_at_least(producer, RESTART_AFTER_COMPLETED),
        timeout=60,
        message=f"{RESTART_AFTER_COMPLETED} jobs to complete",
    )
    ids_lost = redis_command(own_redis.url, ["ZCARD", queue_key(DEFAULT_QUEUE)])
    await asyncio.to_thread(own_redis.restart_empty)
    completed_at_restart = await completed_count(producer)
    assert isinstance(ids_lost, int)
    assert ids_lost > 0, "Redis held no ids when it restarted: the test proves nothing"
    assert completed_at_restart < RUN_JOBS, "the run ended before Redis restarted"

    await eventually(
        lambda: completed_at_least(producer, RUN_JOBS),
        timeout=120,
        interval=0.2,
        message=f"all {RUN_JOBS} jobs to complete",
    )
    assert (await producer.counts()).by_state == {JobState.COMPLETED: RUN_JOBS}
    executions = runs_by_job(runs)
    assert set(executions) == {job.id for job in jobs}
    assert [job_id for job_id, count in executions.items() if count > 1] == []
    assert all(worker.running() for worker in workers)
    # The workers' reconciler saw the empty Redis (no epoch) and refilled it.
    await eventually(lambda: epoch_set(own_redis), timeout=30, message="Redis to be refilled")


async def test_while_redis_is_down_submissions_succeed_and_jobs_run_then_redis_is_used_again(
    own_redis: OwnRedis,
    producer: Conveyor,
    start_redis_worker: StartWorker,
    start_conveyor: StartConveyor,
    tmp_path: Path,
) -> None:
    worker = start_redis_worker("--queues", DEFAULT_QUEUE)
    await wait_until_ready(producer, worker)
    api = start_conveyor("api", "--port", "0")
    runs = tmp_path / "runs"
    async with api_client(await listening_url(api)) as client:
        before = await submit(client, runs)
        await wait_for_state(producer, before, JobState.COMPLETED)

        await asyncio.to_thread(own_redis.kill)
        outage_ends = time.monotonic() + OUTAGE_SECONDS
        during: list[str] = []
        # Paced by the jobs themselves: each is submitted (2xx) and completes while Redis
        # is down, so it went through the store alone.
        while time.monotonic() < outage_ends:
            during.append(await submit(client, runs))
            await wait_for_state(producer, during[-1], JobState.COMPLETED, timeout=15)
        assert not own_redis.serving
        await asyncio.to_thread(own_redis.start)

        # The refill that follows an outage ends with the epoch set on the new server.
        await eventually(
            lambda: epoch_set(own_redis),
            timeout=30,
            message="Redis to be marked complete again",
        )
        # The API publishes again: a job for a queue no worker serves is in Redis as soon
        # as its submission is answered (the reconciler would take its 2 s grace first).
        probe = await eventually(
            lambda: published_on_submission(client, own_redis, runs, queue="parked"),
            timeout=30,
            interval=0.2,
            message="the API to publish to Redis again",
        )
        # The worker claims through Redis again: it serves only the default queue, so it
        # can find this job only by popping its id from the default queue's set.
        redis_command(own_redis.url, ["ZADD", queue_key(DEFAULT_QUEUE), "0", probe])
        after = await submit(client, runs)
        for job_id in (probe, after):
            await wait_for_state(producer, job_id, JobState.COMPLETED, timeout=30)

    assert len(during) >= 2, "too few jobs ran during the outage to show anything"
    assert redis_int(own_redis, "ZSCORE", queue_key(DEFAULT_QUEUE), probe) is None
    executions = runs_by_job(runs)
    assert set(executions) >= {before, *during, probe, after}
    assert set(executions.values()) == {1}
    assert api.running()
    assert worker.running()
    assert re.search(r"Redis at \S+ unavailable", worker.log())
    assert re.search(r"Redis at \S+ restored", worker.log())


@pytest.mark.parametrize(
    "queues",
    [
        # Serving every queue, an idle worker sleeps until it knows of one, then pops in a
        # batch when it claims; serving named queues, it waits in a blocking pop.
        pytest.param((), id="batch-pop"),
        pytest.param(("--queues", DEFAULT_QUEUE), id="blocking-pop"),
    ],
)
async def test_a_job_popped_by_a_worker_that_died_before_claiming_it_runs_once(
    queues: tuple[str, ...],
    own_redis: OwnRedis,
    producer: Conveyor,
    start_redis_worker: StartWorker,
    start_conveyor: StartConveyor,
    tmp_path: Path,
) -> None:
    await mark_redis_complete(start_conveyor, own_redis)
    doomed = start_redis_worker("--no-monitor", *queues, settings={EXIT_AFTER_POP: "1"})
    await wait_until_ready(producer, doomed)
    runs = tmp_path / "runs"
    job = await producer.enqueue(RECORD_RUN, {"runs_file": str(runs), "seconds": 0})
    await exited(doomed, "the worker to die between popping the job's id and claiming it")
    assert doomed.wait(timeout=0) == FAULT_EXIT_CODE, doomed.log()

    lost = await producer.get(job.id)
    assert lost.attempt == 0
    await assert_queued_but_not_in_redis(own_redis, lost)
    await assert_reconciled_and_run_once(producer, start_redis_worker, lost, runs)


async def test_a_job_whose_api_died_between_commit_and_publish_is_kept_and_runs(
    own_redis: OwnRedis,
    producer: Conveyor,
    start_redis_worker: StartWorker,
    start_conveyor: StartConveyor,
    tmp_path: Path,
) -> None:
    await mark_redis_complete(start_conveyor, own_redis)
    # The API validates against tasks workers registered; none may run before the crash.
    await (await producer.store()).register_tasks(tasks.app.registry.infos())
    api = start_conveyor("api", "--port", "0", settings={EXIT_BEFORE_PUBLISH: "1"})
    runs = tmp_path / "runs"
    async with api_client(await listening_url(api)) as client:
        with pytest.raises(httpx.TransportError):
            await client.post("/api/v1/jobs", json=record_run_submission(runs))
    await exited(api, "the API to die between committing the job and publishing its id")
    assert api.wait(timeout=0) == FAULT_EXIT_CODE, api.log()

    (kept,) = (await producer.list_jobs(JobFilter(task=RECORD_RUN))).items
    await assert_queued_but_not_in_redis(own_redis, kept)
    await assert_reconciled_and_run_once(producer, start_redis_worker, kept, runs)


# Helpers ---------------------------------------------------------------------------------


async def assert_queued_but_not_in_redis(own_redis: OwnRedis, job: Job) -> None:
    assert job.state is JobState.QUEUED
    assert not in_redis(own_redis, job)
    assert await epoch_set(own_redis), "Redis counts as complete: only the reconciler helps"


async def assert_reconciled_and_run_once(
    producer: Conveyor, start_redis_worker: StartWorker, job: Job, runs: Path
) -> None:
    """A worker started now gets the job once the reconciler republished it, and runs it."""
    worker = start_redis_worker()
    await wait_until_ready(producer, worker)
    done = await wait_for_state(
        producer, job.id, JobState.COMPLETED, timeout=RECONCILED_WITHIN_SECONDS
    )
    assert done.attempt == 1
    assert runs_by_job(runs) == {job.id: 1}


def queue_key(queue: str) -> str:
    return f"{PREFIX}queue:{queue}"


def redis_int(server: OwnRedis, *command: str) -> int | None:
    reply = redis_command(server.url, list(command))
    return None if reply is None else int(float(str(reply)))


async def epoch_set(server: OwnRedis) -> bool:
    """Whether the reconciler has marked this Redis as holding every ready job."""
    return redis_int(server, "EXISTS", f"{PREFIX}epoch") == 1


def in_redis(server: OwnRedis, job: Job) -> bool:
    return redis_int(server, "ZSCORE", queue_key(job.queue), job.id) is not None


async def completed_count(producer: Conveyor) -> int:
    return (await producer.counts()).by_state.get(JobState.COMPLETED, 0)


async def completed_at_least(producer: Conveyor, count: int) -> bool:
    return await completed_count(producer) >= count


def runs_by_job(runs_file: Path) -> Counter[str]:
    """How many times each job started, from the lines `itest.record_run` appends."""
    if not runs_file.exists():
        return Counter()
    return Counter(line.split()[0] for line in runs_file.read_text().splitlines())


async def exited(process: ConveyorProcess, message: str) -> None:
    async def gone() -> bool:
        return not process.running()

    await eventually(gone, timeout=30, message=message)


async def listening_url(api: ConveyorProcess) -> str:
    async def announced() -> str | None:
        assert api.running(), f"conveyor api exited early:\n{api.log()}"
        found = re.search(r"API on (http://\S+)", api.log())
        return found.group(1) if found else None

    return await eventually(announced, timeout=60, message="conveyor api to listen")


def api_client(base_url: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30)


def record_run_submission(runs: Path, *, queue: str | None = None) -> dict[str, Any]:
    submission: dict[str, Any] = {
        "task": RECORD_RUN,
        "args": {"runs_file": str(runs), "seconds": 0},
    }
    if queue is not None:
        submission["queue"] = queue
    return submission


async def submit(client: httpx.AsyncClient, runs: Path, *, queue: str | None = None) -> str:
    """Submit through the API; the answer must be a 201. The job's id."""
    response = await client.post("/api/v1/jobs", json=record_run_submission(runs, queue=queue))
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


async def published_on_submission(
    client: httpx.AsyncClient, server: OwnRedis, runs: Path, *, queue: str
) -> str | None:
    """Submit a job for `queue`: its id if Redis holds it once the API has answered."""
    job_id = await submit(client, runs, queue=queue)
    score = redis_int(server, "ZSCORE", queue_key(queue), job_id)
    return job_id if score is not None else None
