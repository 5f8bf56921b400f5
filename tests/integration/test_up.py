"""`conveyor up` as a newcomer runs it: a real process in an empty folder, on the default
SQLite store, with the demo app; jobs submitted over HTTP, stopped with Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor import Conveyor, Job, JobState
from conveyor.config import load_settings
from tests.cli.processes import wait_until
from tests.cli.up_process import (
    STOP_SECONDS,
    UpProcess,
    clean_environment,
    is_running,
    tracked_up_processes,
)
from tests.processes import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty working folder: the default store and the key file are created here."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def start_up() -> Iterator[type[UpProcess]]:
    yield from tracked_up_processes()


def test_up_runs_a_job_submitted_over_http_and_stops_cleanly_on_ctrl_c(
    folder: Path, start_up: type[UpProcess]
) -> None:
    up = start_up(folder, "--workers", "2")
    banner = up.wait_until_up()
    workers = up.worker_pids()
    headers = {"Authorization": f"Bearer {banner.key}"}

    with httpx.Client(base_url=banner.url, headers=headers, timeout=30) as client:
        submitted = client.post(
            "/api/v1/jobs", json={"task": "math.square_sum", "args": {"numbers": [1, 2, 3]}}
        )
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["id"]
        finished = client.get(f"/api/v1/jobs/{job_id}", params={"wait": 20})
        result = client.get(f"/api/v1/jobs/{job_id}/result")

    assert finished.json()["state"] == "completed", finished.text
    assert result.json()["result"] == 14.0
    assert len(workers) == 2
    assert (folder / "conveyor.db").exists()
    assert up.interrupt() == 0, up.output()
    assert not [pid for pid in workers if is_running(pid)]
    assert "Traceback" not in up.output()


def test_the_printed_curl_submits_the_demo_job(folder: Path, start_up: type[UpProcess]) -> None:
    banner = start_up(folder).wait_until_up()

    # The banner's command, run by a shell as a developer would paste it.
    submitted = subprocess.run(
        ["bash", "-c", banner.curl], capture_output=True, text=True, timeout=30, check=True
    )

    assert '"task":"math.square_sum"' in submitted.stdout.replace(" ", "")


def test_a_restarted_up_reuses_its_admin_key(folder: Path, start_up: type[UpProcess]) -> None:
    first = start_up(folder, "--workers", "1")
    key = first.wait_until_up().key
    assert first.interrupt() == 0, first.output()

    second = start_up(folder, "--workers", "1")
    again = second.wait_until_up()

    assert again.key == key
    assert (folder / "conveyor-admin.key").read_text().strip() == key
    assert (folder / "conveyor-admin.key").stat().st_mode & 0o777 == 0o600
    assert "reused from" in second.stdout()
    with httpx.Client(base_url=again.url, timeout=30) as client:
        assert client.get("/api/v1/queues", headers={"X-API-Key": key}).status_code == 200


def test_a_revoked_saved_key_is_replaced_by_a_new_one(
    folder: Path, start_up: type[UpProcess]
) -> None:
    first = start_up(folder, "--workers", "1")
    old_key = first.wait_until_up().key
    assert first.interrupt() == 0, first.output()
    key_id = old_key.split("_")[1]
    subprocess.run(
        [sys.executable, "-m", "conveyor", "keys", "revoke", key_id],
        cwd=folder, check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    new_key = start_up(folder, "--workers", "1").wait_until_up().key

    assert new_key != old_key
    assert (folder / "conveyor-admin.key").read_text().strip() == new_key


def test_up_stops_everything_and_fails_when_a_worker_dies(
    folder: Path, start_up: type[UpProcess]
) -> None:
    up = start_up(folder, "--workers", "2")
    up.wait_until_up()
    killed, survivor = up.worker_pids()

    os.kill(killed, signal.SIGKILL)

    assert up.process.wait(timeout=STOP_SECONDS) == 1, up.output()
    assert f"error: worker process {killed} was killed by SIGKILL unexpectedly" in up.stderr()
    assert not is_running(survivor)
    assert "Traceback" not in up.output()


def test_up_says_where_the_demo_app_is_when_it_cannot_import_it(
    folder: Path, start_up: type[UpProcess]
) -> None:
    up = start_up(folder, pythonpath=False)

    assert up.process.wait(timeout=STOP_SECONDS) == 2
    [line] = up.stderr().splitlines()
    assert line.startswith("error: --app examples.app:app: cannot import module")
    assert "--app MODULE:ATTRIBUTE" in line
    assert up.worker_pids() == []


def test_up_fails_clearly_when_its_port_is_taken(folder: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "conveyor", "up", "--port", str(port)],
            cwd=folder, env={**clean_environment(), "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert "started worker process" not in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_lets_a_running_job_finish_before_up_exits(
    folder: Path, start_up: type[UpProcess]
) -> None:
    up = start_up(folder, "--workers", "1")
    banner = up.wait_until_up()
    headers = {"Authorization": f"Bearer {banner.key}"}
    with httpx.Client(base_url=banner.url, headers=headers, timeout=30) as client:
        body = {"task": "demo.sleep", "args": {"seconds": 2}}
        job_id = client.post("/api/v1/jobs", json=body).json()["id"]

        def running() -> bool:
            state: str = client.get(f"/api/v1/jobs/{job_id}").json()["state"]
            return state == "running"

        wait_until(running, timeout=30, message="the job to start")

    assert up.interrupt() == 0, up.output()
    job = blocking_get(f"sqlite:///{folder / 'conveyor.db'}", job_id)
    assert job.state is JobState.COMPLETED
    assert job.result == {"slept": 2.0}


def blocking_get(database_url: str, job_id: str) -> Job:
    async def read() -> Job:
        async with Conveyor(load_settings(database_url=database_url)) as app:
            return await app.get(job_id)

    return asyncio.run(read())


def test_up_uses_the_bootstrap_admin_key_when_one_is_set(
    folder: Path, start_up: type[UpProcess]
) -> None:
    bootstrap = "a-bootstrap-key-for-this-test"
    up = start_up(folder, "--workers", "1", settings={"CONVEYOR_ADMIN_KEY": bootstrap})
    banner = up.wait_until_up()

    # The banner names the variable instead of echoing a secret the user already has.
    assert banner.key == "$CONVEYOR_ADMIN_KEY"
    assert not (folder / "conveyor-admin.key").exists()
    submitted = subprocess.run(
        ["bash", "-c", banner.curl], env={**os.environ, "CONVEYOR_ADMIN_KEY": bootstrap},
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert '"task":"math.square_sum"' in submitted.stdout
