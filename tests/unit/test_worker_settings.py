"""Worker settings: taken from the application settings, checked when built, and a worker
identity that a restarted process never reuses."""

from __future__ import annotations

import os
import socket

import pytest

from conveyor.config import Settings
from conveyor.core.retry import RetryPolicy
from conveyor.runtime.worker import WorkerSettings, default_worker_id


def test_worker_settings_come_from_the_application_settings_with_overrides() -> None:
    settings = Settings(
        lease_seconds=2,
        heartbeat_seconds=0.5,
        retry_base_seconds=0.1,
        retry_max_seconds=1,
        retention_days=2,
        concurrency=7,
    )

    worker = WorkerSettings.from_settings(settings, queues=["a", "b"], with_monitor=False)

    assert (worker.lease_seconds, worker.heartbeat_seconds, worker.concurrency) == (2, 0.5, 7)
    assert worker.retry == RetryPolicy(base_seconds=0.1, max_seconds=1)
    assert worker.retention_seconds == 2 * 86_400
    assert (worker.queues, worker.with_monitor) == (("a", "b"), False)


def test_a_worker_id_names_the_host_and_process_and_is_new_each_time() -> None:
    first, second = default_worker_id(), default_worker_id()

    assert first.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert first != second


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("concurrency", 0, "concurrency"),
        ("heartbeat_seconds", 30.0, "heartbeat_seconds"),
        ("poll_interval_seconds", 0.0, "poll_interval_seconds"),
        ("shutdown_grace_seconds", -1.0, "shutdown_grace_seconds"),
    ],
)
def test_bad_worker_settings_are_refused_with_the_field_named(
    field: str, value: float, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        WorkerSettings(**{field: value})  # type: ignore[arg-type]
