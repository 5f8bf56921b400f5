"""`conveyor db upgrade|current`: bringing a store's schema to what this version needs."""

from __future__ import annotations

import pytest

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
