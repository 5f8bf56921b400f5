"""API keys as the store keeps them: created, found by id, listed, revoked once."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from conveyor.core.access import ApiKey, Role, mint_key
from conveyor.core.errors import ApiKeyNotFound
from conveyor.store.schema import api_keys, db_now_plus
from conveyor.store.sql import SqlJobStore


def new_key(name: str = "ci", *, tenant: str = "acme", role: Role = Role.WRITE) -> ApiKey:
    minted = mint_key()
    return ApiKey(id=minted.key_id, name=name, tenant=tenant, role=role, digest=minted.digest)


@pytest.mark.parametrize("role", list(Role), ids=str)
async def test_a_created_key_is_found_by_its_id(store: SqlJobStore, role: Role) -> None:
    key = new_key(role=role)

    created = await store.create_api_key(key)

    assert created.created_at is not None  # from the database clock
    assert created.revoked_at is None
    assert (created.id, created.name, created.tenant) == (key.id, "ci", "acme")
    assert (created.role, created.digest) == (role, key.digest)
    assert await store.find_api_key(key.id) == created


async def test_an_unknown_key_id_finds_nothing(store: SqlJobStore) -> None:
    assert await store.find_api_key("0123456789ab") is None


async def test_keys_are_listed_oldest_first(store: SqlJobStore) -> None:
    created = [await store.create_api_key(new_key(f"key-{n}")) for n in range(3)]
    # Keys made within one clock tick would tie: age them apart, the first made the youngest.
    async with store.engine.begin() as connection:
        for age, key in enumerate(created):
            older = update(api_keys).where(api_keys.c.id == key.id)
            await connection.execute(older.values(created_at=db_now_plus(-60.0 * (age + 1))))

    listed = await store.list_api_keys()

    assert [key.name for key in listed] == ["key-2", "key-1", "key-0"]
    assert [key.id for key in listed] == [key.id for key in reversed(created)]


async def test_a_revoked_key_keeps_its_record_and_the_first_revocation_instant(
    store: SqlJobStore,
) -> None:
    created = await store.create_api_key(new_key())

    revoked = await store.revoke_api_key(created.id)
    again = await store.revoke_api_key(created.id)

    assert revoked.revoked_at is not None
    assert created.created_at is not None
    assert revoked.revoked_at >= created.created_at
    assert again == revoked
    assert await store.find_api_key(created.id) == revoked
    assert await store.list_api_keys() == [revoked]


async def test_revoking_an_unknown_key_raises_and_changes_nothing(store: SqlJobStore) -> None:
    kept = await store.create_api_key(new_key())

    with pytest.raises(ApiKeyNotFound, match="0123456789ab"):
        await store.revoke_api_key("0123456789ab")

    assert await store.list_api_keys() == [kept]
