"""A plain (synchronous) task that does file I/O and reports its progress.

Plain functions run in the worker's thread pool, so blocking I/O here does not hold up
the worker's other jobs.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import Field

from conveyor import JobContext

MAX_ROWS = 1_000_000
# Progress is reported about this often: often enough to watch, rarely enough to be cheap.
PROGRESS_STEPS = 20


def default_directory() -> Path:
    """Where reports go unless a job says otherwise: a folder in the system's temp dir.

    Not the working directory: a worker may run from a read-only folder (a container image)
    and should not litter a source checkout.
    """
    return Path(tempfile.gettempdir()) / "conveyor-reports"


def csv_report(
    rows: Annotated[int, Field(ge=0, le=MAX_ROWS)],
    ctx: JobContext,
    directory: str | None = None,
) -> str:
    """Write a CSV file of `rows` rows and return its path.

    The file is named after the job, so a retried attempt replaces the same report, and it
    appears only when complete (written aside, then renamed).
    """
    folder = Path(directory) if directory is not None else default_directory()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"report-{ctx.job_id}.csv"
    partial = target.with_suffix(".csv.partial")
    ctx.progress(0, "writing rows")
    with partial.open("w", newline="") as output:
        writer = csv.writer(output)
        writer.writerow(["row", "square", "cube"])
        _write_rows(writer.writerow, rows, ctx)
    os.replace(partial, target)
    ctx.progress(100, "done")
    return str(target)


def _write_rows(write_row: Callable[[list[int]], object], rows: int, ctx: JobContext) -> None:
    step = max(rows // PROGRESS_STEPS, 1)
    for row in range(1, rows + 1):
        write_row([row, row * row, row**3])
        if row % step == 0 and row < rows:
            ctx.progress(100 * row / rows, f"{row} of {rows} rows")
