"""`conveyor up`: mistakes in its options are refused before anything starts; on
PostgreSQL it migrates the store and keeps its admin key in the current folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import UNREACHABLE_POSTGRES, Cli
from tests.cli.up_process import UpProcess, tracked_up_processes


@pytest.mark.parametrize(
    ("arguments", "option"),
    [(["--workers", "0"], "--workers"), (["--port", "70000"], "--port"),
     (["--log-level", "loud"], "--log-level")],
)  # fmt: skip
def test_bad_options_are_usage_errors(cli: Cli, arguments: list[str], option: str) -> None:
    result = cli("up", *arguments)

    assert result.exit_code == 2
    assert option in result.stderr


def test_an_invalid_setting_names_the_variable(cli: Cli) -> None:
    result = cli("up", env={"CONVEYOR_API_PORT": "http"})

    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid configuration: CONVEYOR_API_PORT")


def test_a_bad_app_is_reported_without_the_demo_hint(cli: Cli) -> None:
    result = cli("up", "--app", "tests.cli.app:not_an_app")

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --app tests.cli.app:not_an_app: 'not_an_app' is a str, not a Conveyor app"
    )


def test_an_in_memory_database_is_refused(cli: Cli) -> None:
    result = cli.raw("--database-url", "sqlite:///:memory:", "up")

    assert result.exit_code == 2
    assert "in-memory SQLite" in result.stderr


def test_an_unknown_host_is_a_usage_error(cli: Cli) -> None:
    result = cli("up", "--host", "no-such-host.invalid", "--port", "0")

    assert result.exit_code == 2
    assert result.stderr.startswith("error: --host 'no-such-host.invalid': not an address")


@pytest.fixture
def start_up() -> Iterator[type[UpProcess]]:
    yield from tracked_up_processes()


@pytest.mark.slow
@pytest.mark.postgres
def test_up_migrates_a_new_postgres_database_and_runs_jobs(
    empty_postgres_url: str, start_up: type[UpProcess], tmp_path: Path
) -> None:
    up = start_up(tmp_path, "--workers", "1", database_url=empty_postgres_url)
    banner = up.wait_until_up()

    with httpx.Client(base_url=banner.url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {banner.key}"}
        body = {"task": "math.cube_sum", "args": {"numbers": [1, 2]}}
        job_id = client.post("/api/v1/jobs", json=body, headers=headers).json()["id"]
        finished = client.get(f"/api/v1/jobs/{job_id}", params={"wait": 20}, headers=headers)

    assert finished.json()["result"] == 9.0, finished.text
    assert (tmp_path / "conveyor-admin.key").read_text().strip() == banner.key
    assert up.interrupt() == 0, up.output()


def test_an_unreachable_store_stops_up_before_it_starts_anything(cli: Cli) -> None:
    result = cli.raw("--database-url", UNREACHABLE_POSTGRES, "up", "--port", "0")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: job store unavailable (PostgreSQL at 127.0.0.1:1/")
    assert "started worker process" not in result.stderr
