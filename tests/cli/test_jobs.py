"""`conveyor jobs list|show|cancel|retry|delete`: inspecting and steering jobs."""

from __future__ import annotations

import json

from conveyor import JobState
from tests.cli.conftest import Cli, StoreHelper


def test_list_shows_jobs_newest_first(cli: Cli, store_helper: StoreHelper) -> None:
    older = store_helper.enqueue("cli.add", {"a": 1, "b": 1})
    newer = store_helper.enqueue("cli.fail", {"message": "x"})

    result = cli("jobs", "list")

    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert rows[0].split()[:4] == ["ID", "TASK", "QUEUE", "STATE"]
    assert rows[1].split()[:4] == [newer.id, "cli.fail", "default", "queued"]
    assert rows[2].split()[:4] == [older.id, "cli.add", "arithmetic", "queued"]


def test_list_says_so_when_there_are_no_jobs(cli: Cli) -> None:
    result = cli("jobs", "list")

    assert result.exit_code == 0
    assert result.stdout.strip() == "no jobs"


def test_list_filters_by_state_task_queue_and_tag(cli: Cli, store_helper: StoreHelper) -> None:
    added = store_helper.enqueue("cli.add", {"a": 1, "b": 1}, tags=["nightly"])
    failed = store_helper.enqueue("cli.fail", {"message": "x"})
    store_helper.call(lambda app: app.cancel(failed.id))

    def listed(*filters: str) -> list[str]:
        result = cli("jobs", "list", "--json", *filters)
        assert result.exit_code == 0, result.output
        return [item["id"] for item in json.loads(result.stdout)["items"]]

    assert listed("--state", "cancelled") == [failed.id]
    assert listed("--state", "queued", "--state", "cancelled") == [failed.id, added.id]
    assert listed("--task", "cli.add") == [added.id]
    assert listed("--queue", "arithmetic") == [added.id]
    assert listed("--tag", "nightly") == [added.id]
    assert listed("--state", "completed") == []


def test_list_pages_with_the_printed_cursor(cli: Cli, store_helper: StoreHelper) -> None:
    jobs = [store_helper.enqueue("cli.add", {"a": index, "b": 0}) for index in range(3)]

    first = cli("jobs", "list", "--limit", "2")
    cursor = first.stdout.splitlines()[-1].removeprefix("next page: --cursor ")
    second = cli("jobs", "list", "--limit", "2", "--cursor", cursor, "--json")

    assert first.exit_code == second.exit_code == 0
    assert [row.split()[0] for row in first.stdout.splitlines()[1:3]] == [jobs[2].id, jobs[1].id]
    page = json.loads(second.stdout)
    assert [item["id"] for item in page["items"]] == [jobs[0].id]
    assert page["next_cursor"] is None


def test_list_rejects_an_unknown_state(cli: Cli) -> None:
    result = cli("jobs", "list", "--state", "finished")

    assert result.exit_code == 2
    assert "--state" in result.stderr


def test_list_json_has_the_api_job_shape(cli: Cli, store_helper: StoreHelper) -> None:
    job = store_helper.enqueue("cli.add", {"a": 1, "b": 2})

    result = cli("jobs", "list", "--json")

    item = json.loads(result.stdout)["items"][0]
    assert item["id"] == job.id
    assert item["state"] == "queued"
    assert item["args"] == {"a": 1, "b": 2}
    assert {"created_at", "run_at", "attempt", "max_attempts", "progress", "result"} <= set(item)


def test_show_prints_every_failed_attempt_with_its_traceback(
    cli: Cli, store_helper: StoreHelper
) -> None:
    job = store_helper.enqueue("cli.fail", {"message": "[red]disk full"})
    store_helper.fail(job.id, "[red]disk full")

    result = cli("jobs", "show", job.id)

    assert result.exit_code == 0, result.output
    assert "failed" in result.stdout
    assert "attempt 1 failed: ValueError: [red]disk full" in result.stdout
    assert "Traceback (most recent call last):" in result.stdout
    assert '{"message":"[red]disk full"}' in result.stdout


def test_show_json_includes_result_progress_and_error_history(
    cli: Cli, store_helper: StoreHelper
) -> None:
    job = store_helper.enqueue("cli.add", {"a": 1, "b": 2})
    store_helper.complete(job.id, 3)

    result = cli("jobs", "show", job.id, "--json")

    shown = json.loads(result.stdout)
    assert shown["state"] == "completed"
    assert shown["result"] == 3
    assert shown["progress"] == {"percent": 100.0, "message": "done"}
    assert shown["errors"] == []
    assert shown["attempt"] == 1


def test_show_of_a_missing_job_is_an_error(cli: Cli) -> None:
    result = cli("jobs", "show", "01890000-0000-7000-8000-000000000000")

    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: no job with id '01890000-0000-7000-8000-000000000000'")


def test_cancel_then_retry_then_delete(cli: Cli, store_helper: StoreHelper) -> None:
    job = store_helper.enqueue("cli.add", {"a": 1, "b": 2})

    cancelled = cli("jobs", "cancel", job.id)
    assert cancelled.exit_code == 0, cancelled.output
    assert cancelled.stdout.strip() == f"cancelled job {job.id}"
    assert store_helper.get(job.id).state is JobState.CANCELLED

    retried = cli("jobs", "retry", job.id)
    assert retried.exit_code == 0, retried.output
    assert retried.stdout.strip() == f"job {job.id} is queued again"
    assert store_helper.get(job.id).state is JobState.QUEUED

    store_helper.call(lambda app: app.cancel(job.id))
    deleted = cli("jobs", "delete", job.id)
    assert deleted.exit_code == 0, deleted.output
    assert cli("jobs", "show", job.id).exit_code == 1


def test_cancel_of_a_finished_job_says_why_it_cannot(cli: Cli, store_helper: StoreHelper) -> None:
    job = store_helper.enqueue("cli.add", {"a": 1, "b": 2})
    store_helper.complete(job.id, 3)

    result = cli("jobs", "cancel", job.id)

    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: cannot cancel job {job.id!r}: it is completed"


def test_delete_of_a_waiting_job_is_refused(cli: Cli, store_helper: StoreHelper) -> None:
    job = store_helper.enqueue("cli.add", {"a": 1, "b": 2})

    result = cli("jobs", "delete", job.id)

    assert result.exit_code == 1
    assert "cannot delete" in result.stderr
    assert store_helper.get(job.id).state is JobState.QUEUED


def test_retry_of_a_queued_job_is_refused(cli: Cli, store_helper: StoreHelper) -> None:
    job = store_helper.enqueue("cli.add", {"a": 1, "b": 2})

    result = cli("jobs", "retry", job.id)

    assert result.exit_code == 1
    assert "cannot retry" in result.stderr
