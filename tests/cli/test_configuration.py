"""Mistakes in settings, --app and the store's address: a clear message, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli.conftest import TEST_APP, UNREACHABLE_POSTGRES, Cli
from tests.cli.processes import ROOT


def test_an_invalid_setting_names_the_variable_and_exits_2(cli: Cli) -> None:
    result = cli("jobs", "list", env={"CONVEYOR_LEASE_SECONDS": "abc"})

    assert result.exit_code == 2
    assert "CONVEYOR_LEASE_SECONDS" in result.stderr
    assert "'abc'" in result.stderr
    assert "Traceback" not in result.output


def test_an_unknown_event_loop_names_the_variable_and_the_choices(cli: Cli) -> None:
    result = cli("worker", "--app", TEST_APP, env={"CONVEYOR_EVENT_LOOP": "trio"})

    assert result.exit_code == 2
    assert "CONVEYOR_EVENT_LOOP: Input should be 'auto', 'uvloop' or 'asyncio'" in result.stderr
    assert "Traceback" not in result.output


def test_an_invalid_database_url_flag_names_the_flag(cli: Cli) -> None:
    result = cli.raw("--database-url", "mysql://localhost/jobs", "jobs", "list")

    assert result.exit_code == 2
    assert "--database-url" in result.stderr


def test_the_database_url_flag_wins_over_the_environment(cli: Cli) -> None:
    # The environment points at an unreachable server; the flag's SQLite file is used.
    result = cli("jobs", "list", env={"CONVEYOR_DATABASE_URL": UNREACHABLE_POSTGRES})

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "no jobs"


@pytest.mark.parametrize(
    "arguments",
    [
        ("jobs", "list"),
        ("enqueue", "cli.add", "--args", '{"a": 1, "b": 2}', "--app", TEST_APP),
        ("db", "upgrade"),
    ],
)
def test_an_unreachable_store_is_one_clear_line(cli: Cli, arguments: tuple[str, ...]) -> None:
    result = cli.raw("--database-url", UNREACHABLE_POSTGRES, *arguments)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: job store unavailable (PostgreSQL at 127.0.0.1:1/")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "arguments",
    [
        ("worker", "--app", TEST_APP),
        ("worker", "--app", TEST_APP, "--processes", "2"),
        ("monitor",),
    ],
)
def test_long_running_commands_stop_at_once_when_the_store_is_unreachable(
    arguments: tuple[str, ...],
) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "conveyor", "--database-url", UNREACHABLE_POSTGRES, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )

    assert completed.returncode == 1
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: job store unavailable (PostgreSQL at 127.0.0.1:1/")
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("tests.cli.app", "--app must look like MODULE:ATTRIBUTE"),
        ("tests.cli.no_such_module:app", "cannot import module 'tests.cli.no_such_module'"),
        ("tests.cli.broken_app:app", "importing 'tests.cli.broken_app' failed"),
        ("tests.cli.app:missing", "has no attribute 'missing'"),
        ("tests.cli.app:not_an_app", "'not_an_app' is a str, not a Conveyor app"),
    ],
)
def test_a_bad_app_is_explained(cli: Cli, spec: str, problem: str) -> None:
    result = cli("enqueue", "cli.add", "--app", spec)

    assert result.exit_code == 2
    assert problem in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("flag", "value"), [("--concurrency", "0"), ("--processes", "0"), ("--queues", "a,,b")]
)
def test_worker_flags_are_checked_before_anything_starts(cli: Cli, flag: str, value: str) -> None:
    result = cli("worker", "--app", TEST_APP, flag, value)

    assert result.exit_code == 2
    assert flag in result.stderr


def test_worker_requires_an_app(cli: Cli) -> None:
    result = cli("worker")

    assert result.exit_code == 2
    assert "--app" in result.stderr


def test_python_dash_m_conveyor_runs_the_cli() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "conveyor", "--help"], capture_output=True, text=True, check=False
    )

    assert completed.returncode == 0, completed.stderr
    for command in ("worker", "monitor", "enqueue", "jobs", "watch", "db"):
        assert command in completed.stdout
