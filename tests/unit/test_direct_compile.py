"""Compiling the store's statements for asyncpg: what may run straight on the driver."""

from __future__ import annotations

import pytest
from sqlalchemy import Enum, bindparam, select, update

from conveyor.store import claims
from conveyor.store.direct import compiled_for_asyncpg
from conveyor.store.schema import jobs


def test_a_claim_compiles_to_numbered_parameters_with_its_fixed_values() -> None:
    compiled = compiled_for_asyncpg(claims.claim_statement("postgresql", claims.QueueChoice.ONE))

    arguments = compiled.arguments(
        {"claimant": "w", "lease_seconds": 30.0, "token": "t", "limit": 5, "one_queue": "q"}
    )

    assert "$1" in compiled.sql
    assert ":claimant" not in compiled.sql
    assert len(arguments) == len(compiled.names)
    assert dict(zip(compiled.names, arguments, strict=True))["one_queue"] == "q"
    assert "running" in arguments  # the claimed state, fixed when the statement was built


def test_a_parameter_left_out_is_an_error_not_a_null() -> None:
    compiled = compiled_for_asyncpg(claims.claim_statement("postgresql", claims.QueueChoice.ANY))

    with pytest.raises(ValueError, match="'token'"):
        compiled.arguments({"claimant": "w", "lease_seconds": 30.0, "limit": 5})


def test_an_expanding_in_list_is_refused() -> None:
    statement = select(jobs.c.id).where(jobs.c.id.in_(bindparam("ids", expanding=True)))

    with pytest.raises(ValueError, match="expanding IN"):
        compiled_for_asyncpg(statement)


def test_a_parameter_type_asyncpg_cannot_take_as_it_is_is_refused() -> None:
    status = bindparam("status", type_=Enum("a", "b", name="status"))
    statement = update(jobs).values(state=status)

    with pytest.raises(ValueError, match="needs SQLAlchemy"):
        compiled_for_asyncpg(statement)
