"""Which database a URL means, and how failures to reach it are reported."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from conveyor.core.errors import ConfigError
from conveyor.store.engine import describe_database, is_unavailable, normalize_url


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///conveyor.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///conveyor.db", "sqlite+aiosqlite"),
        ("postgresql://u@db/jobs", "postgresql+asyncpg"),
        ("postgres://u@db/jobs", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@db/jobs", "postgresql+asyncpg"),
    ],
)
def test_database_urls_use_the_async_drivers(given: str, driver: str) -> None:
    assert normalize_url(given).drivername == driver


@pytest.mark.parametrize("given", ["mysql://root@db/jobs", "not a url"])
def test_other_urls_are_a_config_error(given: str) -> None:
    with pytest.raises(ConfigError):
        normalize_url(given)


def test_messages_name_the_server_but_never_the_password() -> None:
    described = describe_database(make_url("postgresql://app:hunter2@db.internal:6543/jobs"))

    assert described == "PostgreSQL at db.internal:6543/jobs"


def test_messages_name_the_sqlite_file() -> None:
    assert describe_database(make_url("sqlite:////var/lib/conveyor.db")).endswith(
        "/var/lib/conveyor.db"
    )


def test_connection_errors_count_as_unavailable_and_query_errors_do_not() -> None:
    assert is_unavailable(ConnectionRefusedError(111, "refused"))
    assert is_unavailable(TimeoutError())
    assert not is_unavailable(ValueError("bad argument"))
