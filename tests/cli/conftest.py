"""Running the `conveyor` command in-process against a fresh SQLite store per test.

Commands run their own event loop (`asyncio.run`), so CLI tests are plain functions, and
they prepare the store with `StoreHelper`, which runs facade calls on a loop of its own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner, Result

from conveyor import Conveyor, ErrorInfo, Job, Progress
from conveyor.cli import app as cli_app
from conveyor.config import ENV_PREFIX, load_settings
from conveyor.core.outcome import Completed, Failed, Outcome
from conveyor.ports import Settlement
from tests.backends import Backend, create_database, drop_database, url_for_database
from tests.cli.app import app as test_app

T = TypeVar("T")

TEST_APP = "tests.cli.app:app"
# Nothing listens on port 1: connecting fails at once.
UNREACHABLE_POSTGRES = "postgresql://postgres@127.0.0.1:1/conveyor"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CONVEYOR_* variable of the developer's shell may change what a test sees."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@dataclass
class Cli:
    """Invoke `conveyor --database-url <the test's store> ...` and capture its output."""

    database_url: str

    def __call__(self, *arguments: str, env: dict[str, str] | None = None) -> Result:
        return self.raw("--database-url", self.database_url, *arguments, env=env)

    def raw(self, *arguments: str, env: dict[str, str] | None = None) -> Result:
        """Without --database-url: the test controls every argument."""
        return CliRunner().invoke(cli_app, list(arguments), env=env)


@pytest.fixture
def cli(sqlite_url: str) -> Cli:
    return Cli(sqlite_url)


@dataclass
class StoreHelper:
    """Arrange the store's state for a test through the facade and the store protocol."""

    database_url: str

    def call(self, work: Callable[[Conveyor], Coroutine[Any, Any, T]]) -> T:
        async def main() -> T:
            app = Conveyor(load_settings(database_url=self.database_url))
            try:
                return await work(app)
            finally:
                await app.close()

        return asyncio.run(main())

    def register_test_tasks(self) -> None:
        """What a worker of tests/cli/app.py does on start: publish its tasks' schemas."""

        async def register(app: Conveyor) -> None:
            await (await app.store()).register_tasks(test_app.registry.infos())

        self.call(register)

    def enqueue(self, task: str, args: dict[str, Any], **options: Any) -> Job:
        self.register_test_tasks()
        return self.call(lambda app: app.enqueue(task, args, **options))

    def get(self, job_id: str) -> Job:
        return self.call(lambda app: app.get(job_id))

    def finish(self, job_id: str, outcome: Outcome, progress: Progress | None = None) -> Job:
        """Claim the job as a worker would and settle it with `outcome`."""

        async def run_once(app: Conveyor) -> Job:
            store = await app.store()
            claims = await store.claim(
                worker_id="cli-test-worker", queues=[], limit=1, lease_seconds=30
            )
            assert [claim.job.id for claim in claims] == [job_id]
            settled = await store.settle([Settlement(job_id, claims[0].token, outcome, progress)])
            assert settled == {job_id}
            return await app.get(job_id)

        return self.call(run_once)

    def complete(self, job_id: str, result: Any) -> Job:
        return self.finish(job_id, Completed(result), Progress(100, "done"))

    def fail(self, job_id: str, message: str) -> Job:
        error = ErrorInfo(
            type="ValueError",
            message=message,
            traceback=f'Traceback (most recent call last):\n  File "tasks.py", line 3\n'
            f"ValueError: {message}\n",
            attempt=1,
        )
        return self.finish(job_id, Failed(error))


@pytest.fixture
def store_helper(sqlite_url: str) -> StoreHelper:
    return StoreHelper(sqlite_url)


@pytest.fixture
def backend_cli(database_url: str) -> Cli:
    """`cli` on each database backend (SQLite, then PostgreSQL)."""
    return Cli(database_url)


@pytest.fixture
def backend_store_helper(database_url: str) -> StoreHelper:
    """`store_helper` on the same store as `backend_cli`."""
    return StoreHelper(database_url)


@pytest.fixture
def empty_postgres_url(postgres_server: Backend) -> Iterator[str]:
    """A PostgreSQL database that was never migrated, dropped after the test."""
    if postgres_server.url is None:
        pytest.fail(postgres_server.problem or "PostgreSQL unavailable", pytrace=False)
    server_url = postgres_server.url
    name = f"conveyor_cli_{secrets.token_hex(6)}"
    asyncio.run(create_database(server_url, name))
    try:
        yield url_for_database(server_url, name)
    finally:
        asyncio.run(drop_database(server_url, name))
