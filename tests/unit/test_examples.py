"""The demo tasks behave as README.md says, called directly with a real JobContext."""

from __future__ import annotations

import csv
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conveyor import InvalidArguments, Job, JobContext, JobState, Progress
from conveyor.config import Settings
from examples import arithmetic, demo, reports
from examples.app import create_app


def context_for(task: str, *, attempt: int = 1) -> tuple[JobContext, list[Progress]]:
    now = datetime.now(UTC)
    job = Job(
        id="01890000-0000-7000-8000-000000000001", task=task, queue="default",
        state=JobState.RUNNING, priority=0, args={}, attempt=attempt, max_attempts=5,
        timeout=None, run_at=now, created_at=now,
    )  # fmt: skip
    reported: list[Progress] = []
    return JobContext(job, report_progress=reported.append), reported


def test_the_app_registers_every_demo_task_with_its_queue(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'demo.db'}"))

    queues = {task.name: task.queue for task in app.registry}

    assert queues == {
        "math.square_sum": "math",
        "math.cube_sum": "math",
        "reports.csv": "reports",
        "demo.sleep": "default",
        "demo.flaky": "default",
    }


async def test_math_tasks_sum_squares_and_cubes() -> None:
    assert await arithmetic.square_sum([1, 2, 3]) == 14.0
    assert await arithmetic.cube_sum([1, 2, 3]) == 36.0
    assert await arithmetic.square_sum([]) == 0.0


def test_math_tasks_refuse_non_numbers(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'demo.db'}"))
    task = app.registry.get("math.square_sum")
    assert task is not None

    with pytest.raises(InvalidArguments) as raised:
        task.validate({"numbers": ["one"]})

    assert [problem.location for problem in raised.value.problems] == [("numbers", 0)]


def test_csv_report_writes_the_rows_and_reports_progress(tmp_path: Path) -> None:
    context, reported = context_for("reports.csv")

    path = Path(reports.csv_report(rows=100, ctx=context, directory=str(tmp_path)))

    assert path.parent == tmp_path
    with path.open(newline="") as written:
        lines = list(csv.reader(written))
    assert lines[0] == ["row", "square", "cube"]
    assert lines[-1] == ["100", "10000", "1000000"]
    assert len(lines) == 101
    percents = [progress.percent for progress in reported]
    assert percents == sorted(percents)
    assert reported[-1] == Progress(100.0, "done")
    assert list(tmp_path.glob("*.partial")) == []


def test_csv_report_of_a_retried_job_replaces_its_file(tmp_path: Path) -> None:
    first, _ = context_for("reports.csv", attempt=1)
    second, _ = context_for("reports.csv", attempt=2)

    paths = {
        reports.csv_report(rows=3, ctx=first, directory=str(tmp_path)),
        reports.csv_report(rows=5, ctx=second, directory=str(tmp_path)),
    }

    assert len(paths) == 1
    assert len(Path(paths.pop()).read_text().splitlines()) == 6


def test_csv_report_rejects_a_negative_row_count(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'demo.db'}"))
    task = app.registry.get("reports.csv")
    assert task is not None

    with pytest.raises(InvalidArguments, match="rows"):
        task.validate({"rows": -1})


def test_sleep_reports_each_stage_then_done() -> None:
    context, reported = context_for("demo.sleep")

    assert demo.sleep(seconds=0, ctx=context) == {"slept": 0}
    assert [progress.message for progress in reported] == [
        "loading",
        "processing",
        "rendering",
        "done",
    ]


def test_sleep_stops_at_its_current_stage_when_cancelled() -> None:
    context, reported = context_for("demo.sleep")
    finished = threading.Event()
    outcome: list[dict[str, object]] = []

    def run() -> None:
        outcome.append(demo.sleep(seconds=3600, ctx=context))
        finished.set()

    thread = threading.Thread(target=run)
    thread.start()
    context.mark_cancelled()

    assert finished.wait(timeout=10), "demo.sleep did not stop when cancelled"
    thread.join()
    assert outcome == [{"stopped_at": "loading"}]
    assert reported[-1].message == "loading"


def test_flaky_fails_its_first_attempts_then_succeeds() -> None:
    for attempt in (1, 2):
        context, _ = context_for("demo.flaky", attempt=attempt)
        with pytest.raises(demo.PlannedFailure, match=f"attempt {attempt}"):
            demo.flaky(failures=2, ctx=context)

    context, _ = context_for("demo.flaky", attempt=3)
    assert demo.flaky(failures=2, ctx=context) == {"succeeded_on_attempt": 3}
