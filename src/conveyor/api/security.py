"""Who is calling, and may they: API keys from headers only, roles, and tenant scopes.

A key comes in `Authorization: Bearer <key>` or `X-API-Key: <key>` (Authorization wins when
both are sent). A key in the query string is refused, never used: URLs end up in logs,
browser histories and proxies. Unknown or revoked keys get 401 with `WWW-Authenticate`;
a key whose role is too weak gets 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from conveyor.api.problems import ProblemException, problem
from conveyor.api.state import State
from conveyor.core.access import Principal, Role, digest_of

QUERY_KEY_PARAMETERS = ("api_key", "key", "token", "access_token", "apikey")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="conveyor"'}

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key as a bearer token: `Authorization: Bearer <key>`.",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKey",
    description="An API key in the `X-API-Key` header.",
)


def unauthenticated(detail: str) -> ProblemException:
    return problem(401, "unauthenticated", detail, headers=CHALLENGE)


async def authenticated(
    request: Request,
    state: State,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    header_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Principal:
    refuse_query_string_keys(request)
    presented = bearer.credentials if bearer is not None else header_key
    if not presented:
        raise unauthenticated(
            "this endpoint needs an API key: send `Authorization: Bearer <key>` "
            "or `X-API-Key: <key>`"
        )
    digest = digest_of(presented)
    principal = state.authentications.get(digest)
    if principal is None:
        principal = await state.conveyor.authenticate(presented)
        if principal is None:
            raise unauthenticated("the API key is unknown or has been revoked")
        state.authentications.put(digest, principal)
    return principal


def refuse_query_string_keys(request: Request) -> None:
    given = [name for name in QUERY_KEY_PARAMETERS if name in request.query_params]
    if given:
        raise unauthenticated(
            f"API keys are not accepted in the query string ({given[0]}=): URLs are logged. "
            "Send `Authorization: Bearer <key>` or `X-API-Key: <key>`, and consider this "
            "key exposed"
        )


def require(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets through principals whose role allows `role`."""

    async def permitted(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        if not principal.role.allows(role):
            raise problem(
                403,
                "forbidden",
                f"this needs a key with the {role.value} role; this key's role is "
                f"{principal.role.value}",
            )
        return principal

    return permitted


def tenant_scope(principal: Principal) -> str | None:
    """The tenant a principal may see: its own, or every tenant (None) for an admin."""
    return None if principal.is_admin else principal.tenant


Reader = Annotated[Principal, Depends(require(Role.READ))]
Writer = Annotated[Principal, Depends(require(Role.WRITE))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
