"""Measures one system in its own environment and prints its figures as one JSON object.

    python -m bench.compare.measure SYSTEM --settings '{...}' [--jobs 10000] [--samples 200]

The same procedure for every system, each step bounded in time:
1. enqueue one by one, for up to ONE_BY_ONE_SECONDS or `jobs` jobs;
2. enqueue `jobs` jobs with the bulk API, where the system has one (chunks of BULK_CHUNK);
3. drain `jobs` queued no-op jobs with 1 worker process, then (refilled) with 2: the rate
   from the first recorded run to the last, and the workers' peak memory (PSS);
4. idle latency: with 1 worker idle, `samples` jobs one after another, each from just
   before its enqueue call to the moment its task ran; between two jobs the harness waits
   IDLE_SECONDS (not counted), so that each finds the worker idle, done settling the last.
A step that fails or runs out of time is reported as an error; the next one still runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.compare import processes
from bench.compare.completions import DIRECTORY_VARIABLE, Completions
from bench.compare.system import Settings, System

ADAPTERS: dict[str, tuple[str, str]] = {
    # system name -> (adapter module, variant passed to its open_system)
    "conveyor-sqlite": ("bench.compare.systems.conveyor", "sqlite"),
    "conveyor-postgres": ("bench.compare.systems.conveyor", "postgres"),
    "conveyor-postgres-redis": ("bench.compare.systems.conveyor", "postgres+redis"),
    "celery": ("bench.compare.systems.celery", ""),
    "rq": ("bench.compare.systems.rq", ""),
    "dramatiq": ("bench.compare.systems.dramatiq", ""),
    "arq": ("bench.compare.systems.arq", ""),
    "saq": ("bench.compare.systems.saq", ""),
    "huey": ("bench.compare.systems.huey", ""),
    "taskiq": ("bench.compare.systems.taskiq", ""),
    "streaq": ("bench.compare.systems.streaq", ""),
    "procrastinate": ("bench.compare.systems.procrastinate", ""),
    "pgqueuer": ("bench.compare.systems.pgqueuer", ""),
}

ONE_BY_ONE_SECONDS = 10.0
BULK_CHUNK = 1000
DRAIN_DEADLINE_SECONDS = 600.0  # RQ, forking per job, needs ~300 s for 10 000
LATENCY_DEADLINE_SECONDS = 10.0  # for one job to run once enqueued
WARM_UP_JOBS = 5
IDLE_SECONDS = 0.05
MEMORY_SAMPLE_SECONDS = 0.1


async def measure(
    system: System, jobs: int, samples: int, completions: Completions, logs: Path
) -> dict[str, Any]:
    figures: dict[str, Any] = {"name": system.name, "backend": system.backend, "errors": {}}

    async def step(name: str, work: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        try:
            figures.update(await work())
        except Exception as error:  # one failing step must not hide the others' figures
            traceback.print_exc(file=sys.stderr)
            figures["errors"][name] = f"{type(error).__name__}: {error}"

    async def one_by_one() -> dict[str, Any]:
        await system.reset()
        started = time.perf_counter()
        count = 0
        while count < jobs and time.perf_counter() - started < ONE_BY_ONE_SECONDS:
            await system.enqueue_one()
            count += 1
        return {"enqueue_one_per_s": count / (time.perf_counter() - started)}

    async def bulk() -> dict[str, Any]:
        if not system.bulk:
            return {"enqueue_bulk_per_s": None}
        await system.reset()
        started = time.perf_counter()
        await fill(system, jobs)
        return {"enqueue_bulk_per_s": jobs / (time.perf_counter() - started)}

    def drain(count: int) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def run() -> dict[str, Any]:
            await system.reset()
            completions.clear()
            await fill(system, jobs)
            rate, peak = await drain_with(system, count, jobs, completions, logs)
            return {f"drain_{count}_per_s": rate, f"peak_rss_{count}_bytes": peak}

        return run

    async def latency() -> dict[str, Any]:
        await system.reset()
        completions.clear()
        values = await latencies(system, samples, completions, logs)
        ordered = sorted(values)
        return {
            "latency_ms": {
                "p50": percentile(ordered, 0.50) * 1000,
                "p95": percentile(ordered, 0.95) * 1000,
                "p99": percentile(ordered, 0.99) * 1000,
                "mean": statistics.fmean(ordered) * 1000,
            }
        }

    await step("enqueue_one", one_by_one)
    await step("enqueue_bulk", bulk)
    await step("drain_1", drain(1))
    await step("drain_2", drain(2))
    await step("latency", latency)
    figures["workers"] = system.workers(1).description
    return figures


async def fill(system: System, count: int) -> None:
    if system.bulk:
        for offset in range(0, count, BULK_CHUNK):
            await system.enqueue_many(min(BULK_CHUNK, count - offset))
    else:
        for _ in range(count):
            await system.enqueue_one()


async def drain_with(
    system: System, count: int, jobs: int, completions: Completions, logs: Path
) -> tuple[float, int]:
    spec = system.workers(count)
    log = logs / f"{system.name}-drain-{count}.log"
    with processes.started(spec.commands, spec.environment, log) as started:
        peak = 0
        deadline = time.monotonic() + DRAIN_DEADLINE_SECONDS
        while completions.refresh() < jobs:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{completions.refresh()} of {jobs} ran within the deadline")
            if any(process.poll() is not None for process in started):
                raise RuntimeError(f"a worker exited; see {log}")
            peak = max(peak, processes.memory_bytes(started))
            await asyncio.sleep(MEMORY_SAMPLE_SECONDS)
        peak = max(peak, processes.memory_bytes(started))
    times = completions.times
    if len(times) > jobs:
        raise RuntimeError(f"{len(times)} runs recorded for {jobs} jobs: some ran twice")
    return (jobs - 1) / (max(times) - min(times)), peak


async def latencies(
    system: System, samples: int, completions: Completions, logs: Path
) -> list[float]:
    spec = system.workers(1)
    log = logs / f"{system.name}-latency.log"
    values: list[float] = []
    with processes.started(spec.commands, spec.environment, log) as started:
        for index in range(WARM_UP_JOBS + samples):
            enqueued_at = time.time()
            await system.enqueue_one()
            ran_at = await next_run(completions, index + 1, started)
            if index >= WARM_UP_JOBS:
                values.append(ran_at - enqueued_at)
            await asyncio.sleep(IDLE_SECONDS)
    return values


async def next_run(completions: Completions, expected: int, started: list[Any]) -> float:
    """Wait (polling every 0.2 ms, which the figure does not include) for run `expected`."""
    deadline = time.monotonic() + LATENCY_DEADLINE_SECONDS
    while completions.refresh() < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {expected} did not run within {LATENCY_DEADLINE_SECONDS} s")
        if any(process.poll() is not None for process in started):
            raise RuntimeError("the worker exited")
        await asyncio.sleep(0.0002)
    return completions.times[expected - 1]


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def open_system(name: str, settings: Settings) -> System:
    module_name, variant = ADAPTERS[name]
    module = importlib.import_module(module_name)
    system: System = module.open_system(settings, variant)
    return system


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("system", choices=sorted(ADAPTERS))
    parser.add_argument("--settings", required=True, help="the Settings, as JSON")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--logs", type=Path, help="where the workers' output goes")
    arguments = parser.parse_args()
    given = json.loads(arguments.settings)
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as folder:
        directory = Path(folder) / "completions"
        directory.mkdir()
        logs: Path = arguments.logs or Path(folder)
        logs.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (before any work starts)
        settings = Settings(**{**given, "completions": str(directory)})
        os.environ[DIRECTORY_VARIABLE] = str(directory)
        system = open_system(arguments.system, settings)
        try:
            completions = Completions(directory)
            figures = await measure(system, arguments.jobs, arguments.samples, completions, logs)
        finally:
            await system.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
