"""`conveyor db upgrade|current`: bringing a store's schema to what this version needs."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest

from tests.backends import Backend, create_database, drop_database, url_for_database
from tests.cli.conftest import Cli


def revisions(cli: Cli) -> dict[str, str]:
    result = cli("db", "current")
    assert result.exit_code == 0, result.output
    lines = [line.split(":", 1) for line in result.stdout.splitlines() if ":" in line]
    return {name.strip(): value.strip() for name, value in lines}


def test_upgrade_brings_a_sqlite_store_to_head(cli: Cli) -> None:
    upgraded = cli("db", "upgrade")

    assert upgraded.exit_code == 0, upgraded.output
    assert "up to date" in upgraded.stdout
    shown = revisions(cli)
    assert shown["current"] == shown["head"]


def test_upgrade_twice_is_harmless(cli: Cli) -> None:
    assert cli("db", "upgrade").exit_code == 0
    assert cli("db", "upgrade").exit_code == 0


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


@pytest.mark.postgres
def test_a_new_postgres_database_is_behind_until_upgraded(empty_postgres_url: str) -> None:
    cli = Cli(empty_postgres_url)

    before = cli("db", "current")
    assert before.exit_code == 0, before.output
    assert "current: none (not migrated)" in before.stdout
    assert "run `conveyor db upgrade`" in before.stdout

    assert cli("db", "upgrade").exit_code == 0
    after = revisions(cli)
    assert after["current"] == after["head"]


@pytest.mark.postgres
def test_commands_on_an_unmigrated_postgres_database_say_to_upgrade(
    empty_postgres_url: str,
) -> None:
    result = Cli(empty_postgres_url)("jobs", "list")

    assert result.exit_code == 2
    assert "conveyor db upgrade" in result.stderr
