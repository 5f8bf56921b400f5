"""Run the comparison: every system in its own environment, then one table and the ratios.

.venv/bin/python -m bench.compare [--systems a,b] [--jobs 10000] [--samples 200] [--rounds 1]

With several rounds, every round measures every system once, in the same order, so that a
slow minute of the machine (its speed drifts by tens of percent) lands on all of them; the
table gives each figure's median over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.compare import report, servers, venvs
from bench.compare.measure import ADAPTERS

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_ADMIN_URL = os.environ.get(
    "CONVEYOR_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SYSTEM_TIMEOUT_SECONDS = 1800.0


def python_for(system: str) -> str:
    if system.startswith("conveyor-"):
        return sys.executable  # Conveyor's own environment
    return venvs.python_for(system)


async def run_system(
    system: str, redis_url: str, folder: Path, jobs: int, samples: int
) -> dict[str, Any]:
    python = python_for(system)
    async with servers.postgres_database(POSTGRES_ADMIN_URL, system) as postgres_url:
        settings = {
            "redis_url": redis_url,
            "postgres_url": postgres_url,
            "sqlite_path": str(folder / f"{system}.db"),
            "completions": "",
        }
        command = [
            python, "-m", "bench.compare.measure", system,
            "--settings", json.dumps(settings),
            "--jobs", str(jobs), "--samples", str(samples),
            "--logs", str(folder / "logs"),
        ]  # fmt: skip
        print(f"measuring {system} ...", file=sys.stderr, flush=True)
        try:
            finished = await asyncio.to_thread(
                subprocess.run,
                command,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.PIPE,
                timeout=SYSTEM_TIMEOUT_SECONDS,
                check=False,
            )
        finally:
            servers.flush_redis(redis_url)
    lines = finished.stdout.decode().strip().splitlines()
    if finished.returncode != 0 or not lines:
        return {"name": system, "errors": {"run": f"exit status {finished.returncode}"}}
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default=",".join(ADAPTERS), help="comma-separated")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every system this many times (median)"
    )
    parser.add_argument("--output", type=Path, help="also write the figures here (JSON)")
    arguments = parser.parse_args()
    if arguments.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {arguments.rounds}")
    systems = [name.strip() for name in arguments.systems.split(",") if name.strip()]
    unknown = sorted(set(systems) - set(ADAPTERS))
    if unknown:
        parser.error(f"unknown systems: {', '.join(unknown)} (known: {', '.join(ADAPTERS)})")
    rounds: dict[str, list[dict[str, Any]]] = {system: [] for system in systems}
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-compare-") as folder,
        servers.private_redis() as redis_url,
    ):
        for number in range(1, arguments.rounds + 1):
            if arguments.rounds > 1:
                print(f"round {number} of {arguments.rounds}", file=sys.stderr, flush=True)
            for system in systems:  # one after another: each has the machine to itself
                figures = await run_system(
                    system, redis_url, Path(folder), arguments.jobs, arguments.samples
                )
                rounds[system].append(figures)
    results = [report.median_of_rounds(measured) for measured in rounds.values()]
    print(
        report.table(
            results, jobs=arguments.jobs, samples=arguments.samples, rounds=arguments.rounds
        )
    )
    if arguments.output:
        arguments.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
