"""Which database a URL means, and how failures to reach it are reported."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy.engine import make_url

from conveyor.core.errors import ConfigError
from conveyor.store.engine import describe_database, dump_json, is_unavailable, normalize_url


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


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (1e16, "10000000000000000.0"),
        (-1.2345678901234568e20, "-123456789012345680000.0"),
        (1e15, "1000000000000000.0"),
        (1.5e-7, "1.5e-7"),
        (2**63, "9223372036854775808"),
    ],
)
def test_json_spells_out_floats_that_postgres_would_read_back_as_ints(
    value: float, written: str
) -> None:
    # jsonb prints 1e+16 as 10000000000000000, which reads back as an int.
    assert dump_json(value) == written
    assert repr(orjson.loads(dump_json(value))) == repr(value)


def test_json_leaves_exponents_inside_strings_alone() -> None:
    document = {"1e+16": ['say "1e+16"', 1e16, '\\"1e+16']}

    written = dump_json(document)

    assert written == '{"1e+16":["say \\"1e+16\\"",10000000000000000.0,"\\\\\\"1e+16"]}'
    assert orjson.loads(written) == document
