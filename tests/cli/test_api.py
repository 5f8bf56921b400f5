"""`conveyor api`: the HTTP API alone, served until SIGTERM; mistakes stop it at start."""

from __future__ import annotations

import asyncio
import gc
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor import Conveyor
from conveyor.cli.serving import ApiServer, bind_listener, wait_until_ready
from conveyor.config import load_settings
from tests.cli.conftest import UNREACHABLE_POSTGRES, Cli
from tests.cli.processes import FAST_SETTINGS, wait_until
from tests.processes import ConveyorProcess


@pytest.fixture
def api_process(sqlite_url: str, tmp_path: Path) -> Iterator[ConveyorProcess]:
    process = ConveyorProcess(
        sqlite_url, tmp_path / "api.log", "api", "--port", "0", settings=FAST_SETTINGS
    )
    yield process
    process.stop()


def listening_url(process: ConveyorProcess) -> str:
    def announced() -> str | None:
        assert process.running(), f"conveyor api exited early:\n{process.log()}"
        found = re.search(r"API on (http://\S+)", process.log())
        return found.group(1) if found else None

    return wait_until(announced, timeout=60, message="conveyor api to listen")


@pytest.mark.slow
def test_api_answers_health_and_stops_on_sigterm(api_process: ConveyorProcess) -> None:
    url = listening_url(api_process)

    with httpx.Client(base_url=url, timeout=30) as client:
        health = client.get("/health")
        ready = client.get("/health/ready")
        docs = client.get("/docs")

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert docs.status_code == 200
    assert api_process.terminate() == 0, api_process.log()
    assert "Traceback" not in api_process.log()


@pytest.mark.slow
def test_api_logs_requests_without_their_query_strings(api_process: ConveyorProcess) -> None:
    url = listening_url(api_process)

    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/health", params={"api_key": "s3cret-in-the-query"})
        client.get("/api/v1/jobs", headers={"Authorization": "Bearer s3cret-in-the-header"})
    assert api_process.terminate() == 0, api_process.log()

    # uvicorn's own access log, which prints whole request lines, is off.
    assert "GET /health" in api_process.log()
    assert "s3cret" not in api_process.log()


def test_a_taken_port_is_one_line_and_exit_1(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = cli("api", "--port", str(port))

    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


@pytest.mark.parametrize(
    ("arguments", "env", "message"),
    [
        (["--port", "-1"], {}, "--port"),
        (["--port", "0", "--host", "no-such-host.invalid"], {}, "error: --host "),
        ([], {"CONVEYOR_API_PORT": "eighty"}, "error: invalid configuration: CONVEYOR_API_PORT"),
        (["--port", "0"], {"CONVEYOR_MAX_BODY_BYTES": "0"}, "CONVEYOR_MAX_BODY_BYTES"),
    ],
)
def test_bad_options_and_settings_are_usage_errors(
    cli: Cli, arguments: list[str], env: dict[str, str], message: str
) -> None:
    result = cli("api", *arguments, env=env)

    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.postgres
def test_a_postgres_store_behind_its_schema_stops_the_api(empty_postgres_url: str) -> None:
    result = Cli(empty_postgres_url)("api", "--port", "0")

    assert result.exit_code == 2
    assert "conveyor db upgrade" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_an_unreachable_store_is_reported_by_readiness_not_fatal(tmp_path: Path) -> None:
    process = ConveyorProcess(
        UNREACHABLE_POSTGRES, tmp_path / "api.log", "api", "--port", "0", settings=FAST_SETTINGS
    )
    try:
        url = listening_url(process)
        with httpx.Client(base_url=url, timeout=30) as client:
            ready = client.get("/health/ready")
            health = client.get("/health")

        assert ready.status_code == 503
        assert health.status_code == 200
        assert process.terminate() == 0, process.log()
    finally:
        process.stop()


async def test_the_api_server_freezes_its_start_up_heap_once_started(sqlite_url: str) -> None:
    """Full collections skip what start-up made (cli/heap.py): a request no longer waits
    behind a walk of the whole application."""
    from conveyor.api.app import create_app

    settings = load_settings(database_url=sqlite_url)
    app = Conveyor(settings)
    await app.migrate()
    listener = bind_listener("127.0.0.1", 0)
    server = ApiServer(create_app(settings, conveyor=app), listener)
    assert gc.get_freeze_count() == 0
    serving = asyncio.create_task(server.serve())
    try:
        await wait_until_ready(listener, timeout=30)
        assert gc.get_freeze_count() > 10_000
    finally:
        server.request_stop()
        await serving
        await app.close()
        gc.unfreeze()  # this test's process is pytest's: give its heap back to the collector
