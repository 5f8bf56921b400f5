"""API keys as the store keeps them: a digest, a tenant and a role, never the key itself."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.core.access import ApiKey, Role
from conveyor.core.errors import ApiKeyNotFound
from conveyor.store.schema import api_keys, db_now


def _key_from_row(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        tenant=row.tenant,
        role=Role(row.role),
        digest=row.digest,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


async def create_api_key(connection: AsyncConnection, key: ApiKey) -> ApiKey:
    statement = (
        insert(api_keys)
        .values(
            id=key.id,
            name=key.name,
            tenant=key.tenant,
            role=key.role.value,
            digest=key.digest,
            created_at=db_now(),
            revoked_at=None,
        )
        .returning(*api_keys.c)
    )
    return _key_from_row((await connection.execute(statement)).one())


async def find_api_key(connection: AsyncConnection, key_id: str) -> ApiKey | None:
    row = (await connection.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
    return None if row is None else _key_from_row(row)


async def list_api_keys(connection: AsyncConnection) -> list[ApiKey]:
    query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    return [_key_from_row(row) for row in await connection.execute(query)]


async def revoke_api_key(connection: AsyncConnection, key_id: str) -> ApiKey:
    # Revoking again keeps the first instant: the audit trail says when it stopped working.
    statement = (
        update(api_keys)
        .where(api_keys.c.id == key_id)
        .values(revoked_at=func.coalesce(api_keys.c.revoked_at, db_now()))
        .returning(*api_keys.c)
    )
    row = (await connection.execute(statement)).first()
    if row is None:
        raise ApiKeyNotFound(key_id)
    return _key_from_row(row)
