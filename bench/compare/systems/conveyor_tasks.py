"""Conveyor's no-op task for the comparison: it records that it ran, and nothing else."""

from __future__ import annotations

from bench.compare.completions import record
from bench.compare.system import QUEUE
from conveyor import Conveyor
from conveyor.config import Settings


def build_app(settings: Settings | None = None) -> Conveyor:
    conveyor = Conveyor(settings)

    @conveyor.task(name="bench.noop", queue=QUEUE)
    async def noop() -> None:
        record()

    return conveyor


app = build_app()  # the workers' (`--app`): its settings come from their environment
