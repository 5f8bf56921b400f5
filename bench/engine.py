"""Throughput and latency of the engine on SQLite, PostgreSQL, and PostgreSQL with Redis.

    .venv/bin/python -m bench.engine [--backends sqlite,postgres,postgres+redis] [--jobs 10000]

Prints, per backend: enqueue rate one by one and with enqueue_many, the drain rate of no-op
jobs with 1 and 2 worker processes, and idle latency from enqueue to completion
(p50/p95/p99). Durations of drains and latencies come from the database's own timestamps
(`started_at`, `finished_at`, `created_at`), so process start-up is not counted.

"postgres+redis" uses the Redis at CONVEYOR_BENCH_REDIS_URL (default
redis://127.0.0.1:6379/0) as the broker of both the producer and the workers, under a key
prefix of its own for each measurement, whose keys are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from bench.tasks import build_app
from conveyor import Conveyor, JobState
from conveyor.config import Settings, load_settings
from conveyor.ports import JobFilter

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "CONVEYOR_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CONVEYOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_SUFFIX = "+redis"
WORKER_CONCURRENCY = 100
REDIS_COMPLETE_DEADLINE_SECONDS = 60.0


@dataclass
class Report:
    backend: str
    figures: dict[str, str] = field(default_factory=dict)


@asynccontextmanager
async def fresh_database(backend: str) -> AsyncIterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    name = f"conveyor_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        await Conveyor(load_settings(database_url=url)).migrate()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@dataclass(frozen=True)
class Deployment:
    """Where one measurement's jobs live: a fresh database and, with Redis as the broker, a
    key prefix no other measurement uses."""

    database_url: str
    redis_prefix: str | None = None

    def settings(self) -> Settings:
        # Only what the backend names: a CONVEYOR_REDIS_URL in the shell changes nothing.
        settings = load_settings(database_url=self.database_url, redis_prefix=self.redis_prefix)
        redis_url = REDIS_URL if self.redis_prefix is not None else None
        return settings.model_copy(update={"redis_url": redis_url})

    def environment(self) -> dict[str, str]:
        """Settings for `conveyor` processes, as CONVEYOR_* variables."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_REDIS_")}
        environment = {**inherited, "CONVEYOR_DATABASE_URL": self.database_url}
        if self.redis_prefix is not None:
            environment |= {
                "CONVEYOR_REDIS_URL": REDIS_URL,
                "CONVEYOR_REDIS_PREFIX": self.redis_prefix,
            }
        return environment


@asynccontextmanager
async def fresh_deployment(backend: str) -> AsyncIterator[Deployment]:
    async with fresh_database(backend.removesuffix(REDIS_SUFFIX)) as url:
        if not backend.endswith(REDIS_SUFFIX):
            yield Deployment(url)
            return
        prefix = f"conveyor-bench:{uuid.uuid4().hex[:8]}:"
        try:
            yield Deployment(url, redis_prefix=prefix)
        finally:
            await delete_redis_keys(prefix)


async def delete_redis_keys(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.unlink(*keys)
    finally:
        await client.aclose()


async def fill_redis(deployment: Deployment) -> None:
    """With Redis, run a monitor until it has marked Redis complete (the reconciler's epoch
    key), as in a deployment that has run for a while: until then, workers also claim from
    the store. The monitor stops then, so that drains run the same processes on every
    backend; the workers' own monitors take over."""
    if deployment.redis_prefix is not None:
        with monitor(deployment):
            await wait_until_redis_complete(deployment)


@contextmanager
def monitor(deployment: Deployment) -> Iterator[None]:
    environment = {**deployment.environment(), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "conveyor", "monitor", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=60)


async def wait_until_redis_complete(deployment: Deployment) -> None:
    """Wait until the reconciler has marked Redis as holding every ready id."""
    if deployment.redis_prefix is None:
        return
    client = Redis.from_url(REDIS_URL)
    try:
        deadline = time.monotonic() + REDIS_COMPLETE_DEADLINE_SECONDS
        while not await client.exists(f"{deployment.redis_prefix}epoch"):
            if time.monotonic() > deadline:
                raise TimeoutError("no monitor marked Redis complete")
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


@contextmanager
def workers(deployment: Deployment, count: int) -> Iterator[None]:
    environment = {**deployment.environment(), "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "conveyor",
        "worker",
        "--app",
        "bench.tasks:app",
        "--queues",
        "bench",
        "--concurrency",
        str(WORKER_CONCURRENCY),
        "--log-level",
        "warning",
    ]
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=environment, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


async def enqueue_one_by_one(app: Conveyor, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        await app.enqueue("bench.noop")
    return count / (time.perf_counter() - started)


async def enqueue_in_batches(app: Conveyor, count: int, batch: int = 1000) -> float:
    started = time.perf_counter()
    for offset in range(0, count, batch):
        await app.enqueue_many("bench.noop", [{}] * min(batch, count - offset))
    return count / (time.perf_counter() - started)


async def wait_until_done(app: Conveyor, count: int, deadline_seconds: float = 600) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        counts = await app.counts()
        if counts.by_state.get(JobState.COMPLETED, 0) >= count:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{count} jobs did not complete within {deadline_seconds} s")


async def drain_rate(app: Conveyor, count: int) -> float:
    """Jobs per second between the first claim and the last completion (database clock)."""
    starts: list[datetime] = []
    finishes: list[datetime] = []
    cursor = None
    while True:
        page = await app.list_jobs(JobFilter(states=[JobState.COMPLETED]), limit=500, cursor=cursor)
        starts.extend(job.started_at for job in page.items if job.started_at is not None)
        finishes.extend(job.finished_at for job in page.items if job.finished_at is not None)
        cursor = page.next_cursor
        if cursor is None:
            break
    return count / (max(finishes) - min(starts)).total_seconds()


async def measure_drain(deployment: Deployment, processes: int, count: int) -> float:
    async with deployment_app(deployment) as app:
        await fill_redis(deployment)
        await enqueue_in_batches(app, count)
        with workers(deployment, processes):
            await wait_until_done(app, count)
        return await drain_rate(app, count)


async def measure_latency(app: Conveyor, samples: int) -> list[float]:
    """Enqueue one job at a time into an idle worker: created_at → finished_at."""
    latencies = []
    for _ in range(samples):
        job = await app.enqueue("bench.noop")
        await app.wait(job.id, timeout=30)
        done = await app.get(job.id)
        if done.finished_at is None:
            raise RuntimeError(f"job {job.id} completed without a finish time")
        latencies.append((done.finished_at - done.created_at).total_seconds() * 1000)
    return latencies


@asynccontextmanager
async def deployment_app(deployment: Deployment) -> AsyncIterator[Conveyor]:
    app = build_app(deployment.settings())
    try:
        yield app
    finally:
        await app.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def bench_backend(backend: str, jobs: int, samples: int) -> Report:
    report = Report(backend)
    async with fresh_deployment(backend) as deployment, deployment_app(deployment) as app:
        report.figures["enqueue one by one"] = f"{await enqueue_one_by_one(app, 2000):,.0f} jobs/s"
        report.figures["enqueue_many (1000/batch)"] = (
            f"{await enqueue_in_batches(app, jobs):,.0f} jobs/s"
        )
    for processes in (1, 2):
        async with fresh_deployment(backend) as deployment:
            rate = await measure_drain(deployment, processes, jobs)
        report.figures[f"drain {jobs:,} no-op, {processes} process(es)"] = f"{rate:,.0f} jobs/s"
    async with fresh_deployment(backend) as deployment, deployment_app(deployment) as app:
        with workers(deployment, 1):
            warm_up = await app.enqueue("bench.noop")
            await app.wait(warm_up.id, timeout=60)  # the worker is up once this completes
            await wait_until_redis_complete(deployment)
            latencies = await measure_latency(app, samples)
        report.figures["idle latency p50/p95/p99"] = (
            " / ".join(f"{percentile(latencies, q):.1f}" for q in (0.50, 0.95, 0.99)) + " ms"
        )
    return report


def print_reports(reports: list[Report]) -> None:
    for report in reports:
        print(f"\n{report.backend}")
        for name, figure in report.figures.items():
            print(f"  {name:<40} {figure:>22}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=200)
    options = parser.parse_args()
    reports = [
        asyncio.run(bench_backend(backend, options.jobs, options.latency_samples))
        for backend in options.backends.split(",")
    ]
    print_reports(reports)


if __name__ == "__main__":
    main()
