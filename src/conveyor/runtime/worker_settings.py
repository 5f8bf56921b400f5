"""WorkerSettings: how one worker runs, as a frozen value built at the edge."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any

from conveyor.config import EventLoopChoice, Settings
from conveyor.core.retry import RetryPolicy
from conveyor.ports import WorkerInfo
from conveyor.runtime.event_loops import loop_factory
from conveyor.runtime.heartbeat import HeartbeatSettings

SECONDS_PER_DAY = 86_400.0


def default_worker_id() -> str:
    """host:pid:random, so a restarted process never reuses an identity (FIELD-FAILURES #3)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    worker_id: str = field(default_factory=default_worker_id)
    queues: tuple[str, ...] = ()  # empty: every queue
    concurrency: int = 10
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    poll_interval_seconds: float = 1.0
    shutdown_grace_seconds: float = 25.0
    progress_interval_seconds: float = 0.5
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    default_timeout: float | None = None
    with_monitor: bool = True
    monitor_interval_seconds: float = 5.0
    retention_seconds: float = 7 * SECONDS_PER_DAY
    # Of the worker's handler and heartbeat threads (its own loop is its caller's).
    event_loop: EventLoopChoice = "auto"

    def __post_init__(self) -> None:
        for problem in _problems(self):
            raise ValueError(f"invalid worker settings: {problem}")

    def heartbeat_settings(self) -> HeartbeatSettings:
        return HeartbeatSettings(
            worker_id=self.worker_id,
            lease_seconds=self.lease_seconds,
            interval_seconds=self.heartbeat_seconds,
            progress_interval_seconds=self.progress_interval_seconds,
        )

    def worker_info(self) -> WorkerInfo:
        """This worker as it registers itself: identity, host, process, what it runs."""
        return WorkerInfo(
            id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            concurrency=self.concurrency,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WorkerSettings:
        """The worker's part of the application settings; explicit overrides win."""
        values: dict[str, Any] = {
            "concurrency": settings.concurrency,
            "lease_seconds": settings.lease_seconds,
            "heartbeat_seconds": settings.heartbeat_seconds,
            "poll_interval_seconds": settings.poll_interval_seconds,
            "shutdown_grace_seconds": settings.shutdown_grace_seconds,
            "retry": RetryPolicy(
                base_seconds=settings.retry_base_seconds, max_seconds=settings.retry_max_seconds
            ),
            "monitor_interval_seconds": settings.monitor_interval_seconds,
            "retention_seconds": settings.retention_days * SECONDS_PER_DAY,
            "event_loop": settings.event_loop,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        values["queues"] = tuple(values.get("queues", ()))
        return cls(**values)


def _problems(settings: WorkerSettings) -> list[str]:
    problems = []
    if settings.concurrency < 1:
        problems.append(f"concurrency must be >= 1, got {settings.concurrency}")
    if not 0 < settings.heartbeat_seconds < settings.lease_seconds:
        problems.append(
            "heartbeat_seconds must be > 0 and shorter than lease_seconds "
            f"(got {settings.heartbeat_seconds} and {settings.lease_seconds})"
        )
    positive = ("poll_interval_seconds", "progress_interval_seconds", "monitor_interval_seconds")
    problems.extend(
        f"{name} must be > 0, got {getattr(settings, name)}"
        for name in positive
        if not getattr(settings, name) > 0
    )
    if settings.shutdown_grace_seconds < 0:
        grace = settings.shutdown_grace_seconds
        problems.append(f"shutdown_grace_seconds must be >= 0, got {grace}")
    try:
        loop_factory(settings.event_loop)
    except (ValueError, ImportError) as error:
        problems.append(f"event_loop: {error}")
    return problems
