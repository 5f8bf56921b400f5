"""Real `conveyor worker` processes for the integration tests, with short leases."""

from __future__ import annotations

from pathlib import Path

from tests.processes import ConveyorProcess

# Short intervals so recovery happens in seconds (DESIGN.md §8: they must work).
FAST_SETTINGS = {
    "CONVEYOR_LEASE_SECONDS": "2",
    "CONVEYOR_HEARTBEAT_SECONDS": "0.5",
    "CONVEYOR_MONITOR_INTERVAL_SECONDS": "0.5",
    "CONVEYOR_POLL_INTERVAL_SECONDS": "0.2",
    "CONVEYOR_RETRY_BASE_SECONDS": "0.1",
    "CONVEYOR_RETRY_MAX_SECONDS": "0.5",
    "CONVEYOR_SHUTDOWN_GRACE_SECONDS": "10",
}


def start_worker_process(
    database_url: str,
    log_path: Path,
    *arguments: str,
    settings: dict[str, str] | None = None,
) -> ConveyorProcess:
    """`conveyor worker` for the integration tasks, with the fast settings above."""
    return ConveyorProcess(
        database_url,
        log_path,
        "worker",
        "--app",
        "tests.integration.tasks:app",
        *arguments,
        settings={**FAST_SETTINGS, **(settings or {})},
    )
