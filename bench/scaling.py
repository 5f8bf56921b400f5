"""Does the cost per job grow with the backlog? Conveyor on PostgreSQL, 10 000 vs 1 000 000.

    .venv/bin/python -m bench.scaling [--large 1000000] [--small 10000] [--redis]

For each backlog size, on a fresh database: enqueue the backlog (enqueue_many), time
20 claims of 100 jobs from it (the claim statement alone, in this process; 2 000 jobs, then
completed), then start 2 worker processes and time their first `--window` completions
(the tasks' own records, as in bench.compare). With the large backlog the workers then
drain all of it, which also shows the end of a long run: the rate of the last window (after
a million updates have left dead row versions behind) and the workers' memory (PSS) at
the start and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.compare import processes, servers
from bench.compare.completions import DIRECTORY_VARIABLE, Completions
from bench.compare.system import QUEUE, Settings
from bench.compare.systems.conveyor import ConveyorSystem
from conveyor.core.outcome import Completed
from conveyor.ports import Settlement
from conveyor.store.sql import SqlJobStore

FILL_CHUNK = 5000
CLAIM_SAMPLES = 20
CLAIM_LIMIT = 100
SAMPLED_JOBS = CLAIM_SAMPLES * CLAIM_LIMIT
"""Jobs the claim samples take (and complete) before the workers start."""
DRAIN_DEADLINE_SECONDS = 1800.0
POLL_SECONDS = 0.1


@dataclass
class Figures:
    backlog: int
    fill_per_s: float
    claim_ms: list[float]
    first_window_per_s: float
    last_window_per_s: float | None = None
    rss_start_mb: float | None = None
    rss_end_mb: float | None = None

    def line(self) -> str:
        claims = sorted(self.claim_ms)
        median = statistics.median(claims)
        p99 = claims[min(len(claims) - 1, round(0.99 * len(claims)))]
        text = (
            f"| {self.backlog:,} | {self.fill_per_s:,.0f} | {median:.2f} / {p99:.2f} "
            f"| {self.first_window_per_s:,.0f} |"
        )
        if self.last_window_per_s is not None:
            text += (
                f" {self.last_window_per_s:,.0f} | {self.rss_start_mb:.0f} → "
                f"{self.rss_end_mb:.0f} |"
            )
        else:
            text += " — | — |"
        return text


async def claim_times(store: SqlJobStore) -> list[float]:
    """Milliseconds per claim of CLAIM_LIMIT jobs; the claimed jobs are then completed (a
    release would put the same rows back at the head, and time their dead versions)."""
    times = []
    for _ in range(CLAIM_SAMPLES):
        started = time.perf_counter()
        claims = await store.claim(
            worker_id="bench", queues=(QUEUE,), limit=CLAIM_LIMIT, lease_seconds=60
        )
        times.append((time.perf_counter() - started) * 1000)
        await store.settle([Settlement(c.job.id, c.token, Completed(None)) for c in claims])
    return times


def window_rate(times: list[float]) -> float:
    return (len(times) - 1) / (max(times) - min(times))


async def measure(
    backlog: int, window: int, shape: str, folder: Path, redis_url: str, drain_all: bool
) -> Figures:
    completions_dir = folder / f"completions-{backlog}"
    completions_dir.mkdir()
    os.environ[DIRECTORY_VARIABLE] = str(completions_dir)  # the workers inherit it
    async with servers.postgres_database(
        "postgresql://postgres@127.0.0.1:5432/postgres", f"scaling-{backlog}"
    ) as url:
        settings = Settings(
            redis_url=redis_url,
            postgres_url=url,
            sqlite_path=str(folder / "unused.db"),
            completions=str(completions_dir),
        )
        system = ConveyorSystem(settings, shape)
        await system.reset()
        started = time.perf_counter()
        for offset in range(0, backlog, FILL_CHUNK):
            await system.enqueue_many(min(FILL_CHUNK, backlog - offset))
        fill_rate = backlog / (time.perf_counter() - started)
        store = await SqlJobStore.open(url)
        try:
            claims = await claim_times(store)
        finally:
            await store.close()
        completions = Completions(completions_dir)
        spec = system.workers(2)
        figures = Figures(backlog, fill_rate, claims, 0.0)
        log = folder / "workers.log"
        with processes.started(spec.commands, spec.environment, log) as workers:
            await until(completions, window, workers)
            figures.first_window_per_s = window_rate(completions.times[:window])
            figures.rss_start_mb = processes.memory_bytes(workers) / 2**20
            if drain_all:
                await until(completions, backlog - SAMPLED_JOBS, workers)
                figures.rss_end_mb = processes.memory_bytes(workers) / 2**20
                figures.last_window_per_s = window_rate(sorted(completions.times)[-window:])
        await system.close()
    return figures


async def until(
    completions: Completions, count: int, workers: list[subprocess.Popen[bytes]]
) -> None:
    deadline = time.monotonic() + DRAIN_DEADLINE_SECONDS
    while completions.refresh() < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {completions.refresh()} of {count} jobs ran in time")
        if any(worker.poll() is not None for worker in workers):
            raise RuntimeError("a worker exited; see workers.log")
        await asyncio.sleep(POLL_SECONDS)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--window", type=int, default=5_000)
    parser.add_argument("--redis", action="store_true", help="PostgreSQL + Redis")
    arguments = parser.parse_args()
    # A window larger than what the claim samples leave would wait for jobs that never come.
    left = arguments.small - SAMPLED_JOBS
    if left < 2:
        parser.error(
            f"--small must be at least {SAMPLED_JOBS + 2:,} "
            f"(the claim samples take {SAMPLED_JOBS:,})"
        )
    if arguments.window < 2 or arguments.window > left:
        parser.error(
            f"--window must be between 2 and {left:,} (--small minus the "
            f"{SAMPLED_JOBS:,} jobs the claim samples take)"
        )
    if arguments.large < arguments.small:
        parser.error("--large must be at least --small")
    shape = "postgres+redis" if arguments.redis else "postgres"
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-scaling-") as folder,
        servers.private_redis() as redis_url,
    ):
        small = await measure(
            arguments.small, arguments.window, shape, Path(folder), redis_url, False
        )
        large = await measure(
            arguments.large, arguments.window, shape, Path(folder), redis_url, True
        )
    print(f"Conveyor ({shape}), 2 worker processes, drain windows of {arguments.window:,} jobs\n")
    print(
        "| backlog | fill /s | claim of 100 ms p50 / p99 | drain, first window /s "
        "| drain, last window /s | worker memory (PSS) start → end MB |"
    )
    print("|---|---|---|---|---|---|")
    print(small.line())
    print(large.line())
    print(
        f"\ncost per job, 1st window, large vs small backlog: "
        f"{small.first_window_per_s / large.first_window_per_s:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
