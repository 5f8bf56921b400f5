"""What `measure` needs from each system: an adapter module in `systems/` per system.

An adapter module defines `open_system(settings) -> System`. It runs in the system's own
virtual environment, and its workers import the system's no-op task, which must call
`bench.compare.completions.record()` and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

QUEUE = "bench"
"""The queue (or its equivalent) every system's jobs go to."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the system keeps its jobs, given by the orchestrator."""

    redis_url: str  # a private Redis server; the system may flush its database
    postgres_url: str  # a database of this system alone, dropped afterwards
    sqlite_path: str  # a file of this system alone (Conveyor's SQLite shape)
    completions: str  # the directory the no-op task records runs into


@dataclass(frozen=True, slots=True)
class WorkerProcesses:
    """How to start the workers: each command is started in a process group of its own,
    with `environment` added, and stopped with SIGTERM (then SIGKILL) of the group."""

    commands: Sequence[Sequence[str]]
    environment: Mapping[str, str] = field(default_factory=dict)
    description: str = ""  # the settings, as the table's footnote shows them


class System(Protocol):
    name: str  # as the table shows it: "celery", "conveyor-postgres"
    backend: str  # "redis", "postgres" or "sqlite"
    bulk: bool  # whether it has an API that enqueues many jobs in one call

    async def reset(self) -> None:
        """Empty the queue: no job left, queued or running (workers are stopped)."""
        ...

    async def enqueue_one(self) -> None:
        """Enqueue one no-op job, as an application would, one call per job."""
        ...

    async def enqueue_many(self, count: int) -> None:
        """Enqueue `count` no-op jobs with the bulk API (only called when `bulk`)."""
        ...

    def workers(self, processes: int) -> WorkerProcesses:
        """`processes` worker processes, each running jobs, with production settings for a
        2-core machine."""
        ...

    async def close(self) -> None: ...
