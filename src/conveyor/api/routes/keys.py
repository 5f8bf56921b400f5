"""API keys (admin only): list, create (the plaintext is shown once), revoke."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path

from conveyor.api.problems import problem_responses
from conveyor.api.representations import KeyListOut, KeyOut, NewKeyOut, key_out, new_key_out
from conveyor.api.security import Admin
from conveyor.api.state import State
from conveyor.api.strict_json import StrictJSONRoute
from conveyor.api.submissions import KeyRequest
from conveyor.core.errors import ApiKeyNotFound

router = APIRouter(prefix="/keys", tags=["keys"], route_class=StrictJSONRoute)

_KEY_ID = re.compile(r"[0-9a-f]{12}")
KeyId = Annotated[str, Path(max_length=100, description="the key's id (not the key itself)")]


@router.get(
    "",
    response_model=KeyListOut,
    summary="Every API key, revoked ones included (never the keys themselves)",
    responses=problem_responses(401, 403, 503),
)
async def list_keys(state: State, principal: Admin) -> KeyListOut:
    return KeyListOut(items=[key_out(key) for key in await state.conveyor.list_api_keys()])


@router.post(
    "",
    status_code=201,
    response_model=NewKeyOut,
    summary="Create a key; `key` is shown this once",
    responses=problem_responses(401, 403, 413, 415, 422, 503),
)
async def create_key(request: KeyRequest, state: State, principal: Admin) -> NewKeyOut:
    key, plaintext = await state.conveyor.create_api_key(
        name=request.name, tenant=request.tenant, role=request.role
    )
    return new_key_out(key, plaintext)


@router.post(
    "/{key_id}/revoke",
    response_model=KeyOut,
    summary="Revoke a key; this process stops accepting it at once",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def revoke_key(key_id: KeyId, state: State, principal: Admin) -> KeyOut:
    if not _KEY_ID.fullmatch(key_id):
        raise ApiKeyNotFound(key_id)
    key = await state.conveyor.revoke_api_key(key_id)
    state.authentications.forget_key(key.id)
    return key_out(key)
