"""`conveyor enqueue`: what a user submitting jobs from a shell relies on."""

from __future__ import annotations

import pytest

from conveyor import JobState
from tests.cli.conftest import TEST_APP, Cli, StoreHelper


def test_enqueue_with_app_prints_the_id_of_the_stored_job(
    cli: Cli, store_helper: StoreHelper
) -> None:
    result = cli("enqueue", "cli.add", "--args", '{"a": 2, "b": 3}', "--app", TEST_APP)

    assert result.exit_code == 0, result.output
    job = store_helper.get(result.stdout.strip())
    assert job.task == "cli.add"
    assert job.args == {"a": 2, "b": 3}
    assert job.queue == "arithmetic"
    assert job.state is JobState.QUEUED


def test_enqueue_without_app_validates_against_tasks_workers_registered(
    cli: Cli, store_helper: StoreHelper
) -> None:
    store_helper.register_test_tasks()

    result = cli("enqueue", "cli.add", "--args", '{"a": 1, "b": 1}')

    assert result.exit_code == 0, result.output
    assert store_helper.get(result.stdout.strip()).state is JobState.QUEUED


def test_enqueue_options_reach_the_job(cli: Cli, store_helper: StoreHelper) -> None:
    result = cli(
        "enqueue", "cli.add", "--args", '{"a": 1, "b": 2}', "--app", TEST_APP,
        "--queue", "urgent", "--priority", "7", "--max-attempts", "2", "--timeout", "9.5",
        "--tag", "nightly", "--tag", "billing", "--delay", "3600",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    job = store_helper.get(result.stdout.strip())
    assert (job.queue, job.priority, job.max_attempts, job.timeout) == ("urgent", 7, 2, 9.5)
    assert job.tags == ("nightly", "billing")
    assert job.state is JobState.SCHEDULED


def test_the_same_idempotency_key_returns_the_same_job(cli: Cli) -> None:
    first = cli("enqueue", "cli.add", "--args", '{"a": 1, "b": 2}', "--app", TEST_APP,
                "--idempotency-key", "order-42")  # fmt: skip
    again = cli("enqueue", "cli.add", "--args", '{"a": 1, "b": 2}', "--app", TEST_APP,
                "--idempotency-key", "order-42")  # fmt: skip

    assert first.exit_code == again.exit_code == 0
    assert first.stdout == again.stdout


def test_enqueue_wait_prints_the_result_of_a_completed_job(
    cli: Cli, store_helper: StoreHelper
) -> None:
    # Replaying an idempotency key returns the existing job: here one that already ended.
    job = store_helper.enqueue("cli.add", {"a": 20, "b": 22}, idempotency_key="sum-42")
    store_helper.complete(job.id, 42)

    result = cli("enqueue", "cli.add", "--args", '{"a": 20, "b": 22}', "--wait",
                 "--idempotency-key", "sum-42")  # fmt: skip

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [job.id, "42"]


def test_enqueue_wait_exits_1_with_the_error_of_a_failed_job(
    cli: Cli, store_helper: StoreHelper
) -> None:
    job = store_helper.enqueue("cli.fail", {"message": "disk full"}, idempotency_key="f-1")
    store_helper.fail(job.id, "disk full")

    result = cli("enqueue", "cli.fail", "--args", '{"message": "disk full"}', "--wait",
                 "--idempotency-key", "f-1")  # fmt: skip

    assert result.exit_code == 1
    assert result.stdout.strip() == job.id
    assert result.stderr.strip() == f"error: job {job.id!r} ended failed: disk full"


def test_enqueue_wait_gives_up_after_the_wait_timeout(cli: Cli) -> None:
    result = cli("enqueue", "cli.add", "--args", '{"a": 1, "b": 2}', "--app", TEST_APP,
                 "--wait", "--wait-timeout", "0.2")  # fmt: skip

    assert result.exit_code == 1
    job_id = result.stdout.strip()
    assert f"job {job_id} did not end within 0.2 seconds" in result.stderr
    assert f"conveyor watch {job_id}" in result.stderr


# Bad input ------------------------------------------------------------------------------


def test_an_unknown_task_is_refused_with_its_name(cli: Cli) -> None:
    result = cli("enqueue", "no.such_task", "--args", "{}")

    assert result.exit_code == 2
    assert "unknown task 'no.such_task'" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a list"),
        ("3", "not a int"),
        ("null", "not a null"),
    ],
)
def test_args_must_be_a_json_object(cli: Cli, value: str, problem: str) -> None:
    result = cli("enqueue", "cli.add", "--args", value, "--app", TEST_APP)

    assert result.exit_code == 2
    assert "--args" in result.stderr
    assert problem in result.stderr


def test_arguments_not_matching_the_signature_name_each_field_and_problem(cli: Cli) -> None:
    result = cli("enqueue", "cli.add", "--args", '{"a": "x", "c": 1}', "--app", TEST_APP)

    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "error: invalid arguments for task 'cli.add':"
    assert "  a: expected integer, got string" in lines
    assert "  b: field required" in lines
    assert "  c: unexpected field 'c'" in lines


def test_arguments_are_checked_against_the_registered_schema_without_app(
    cli: Cli, store_helper: StoreHelper
) -> None:
    store_helper.register_test_tasks()

    result = cli("enqueue", "cli.add", "--args", '{"a": 1}')

    assert result.exit_code == 2
    assert "b: field required" in result.stderr


def test_invalid_job_options_are_each_named(cli: Cli) -> None:
    result = cli("enqueue", "cli.add", "--args", '{"a": 1, "b": 2}', "--app", TEST_APP,
                 "--delay", "-1", "--priority", "99999999")  # fmt: skip

    assert result.exit_code == 2
    assert "invalid job options:" in result.stderr
    assert "delay: must be a number of seconds" in result.stderr
    assert "priority: must be an integer between" in result.stderr


def test_a_number_flag_given_a_word_is_a_usage_error(cli: Cli) -> None:
    result = cli("enqueue", "cli.add", "--priority", "high", "--app", TEST_APP)

    assert result.exit_code == 2
    assert "--priority" in result.stderr
