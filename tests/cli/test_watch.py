"""`conveyor watch`: following a job until it ends, with the exit code scripts rely on."""

from __future__ import annotations

from tests.cli.conftest import Cli, StoreHelper


def test_watch_of_a_completed_job_prints_its_result_and_exits_0(
    cli: Cli, store_helper: StoreHelper
) -> None:
    job = store_helper.enqueue("cli.add", {"a": 1, "b": 2})
    store_helper.complete(job.id, 3)

    result = cli("watch", job.id)

    assert result.exit_code == 0, result.output
    assert "completed" in result.stdout
    assert "100%" in result.stdout
    assert result.stdout.splitlines()[-1] == f"job {job.id} completed: 3"


def test_watch_of_a_failed_job_exits_1_with_its_error(cli: Cli, store_helper: StoreHelper) -> None:
    job = store_helper.enqueue("cli.fail", {"message": "disk full"})
    store_helper.fail(job.id, "disk full")

    result = cli("watch", job.id)

    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: job {job.id} ended failed: ValueError: disk full"


def test_watch_of_a_cancelled_job_exits_1(cli: Cli, store_helper: StoreHelper) -> None:
    job = store_helper.enqueue("cli.add", {"a": 1, "b": 2})
    store_helper.call(lambda app: app.cancel(job.id))

    result = cli("watch", job.id)

    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: job {job.id} ended cancelled"


def test_watch_of_a_missing_job_is_an_error(cli: Cli) -> None:
    result = cli("watch", "01890000-0000-7000-8000-000000000000")

    assert result.exit_code == 1
    assert "no job with id" in result.stderr
