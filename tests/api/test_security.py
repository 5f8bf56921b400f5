"""API keys in headers only, roles, and tenants that never see each other's jobs."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from conveyor.core.access import Role
from tests.api.harness import ADMIN_KEY, Api, Headers, assert_problem

SQUARE_SUM = {"task": "math.square_sum", "args": {"numbers": [1, 2]}}
CHALLENGE = 'Bearer realm="conveyor"'


def assert_unauthenticated(response: Any) -> dict[str, Any]:
    problem = assert_problem(response, 401)
    assert response.headers["www-authenticate"] == CHALLENGE
    return problem


async def test_a_request_without_a_key_gets_401_with_a_challenge(api: Api) -> None:
    response = await api.client.get("/api/v1/jobs")

    problem = assert_unauthenticated(response)
    assert "Authorization: Bearer" in problem["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": "Bearer cvk_000000000000_nope"}, id="unknown key"),
        pytest.param({"Authorization": "Bearer not-a-key"}, id="malformed key"),
        pytest.param({"X-API-Key": "cvk_000000000000_nope"}, id="unknown header key"),
        pytest.param({"Authorization": f"Basic {ADMIN_KEY}"}, id="wrong scheme"),
    ],
)
async def test_a_bad_key_gets_401(api: Api, headers: Headers) -> None:
    assert_unauthenticated(await api.client.get("/api/v1/jobs", headers=headers))


async def test_a_key_works_as_a_bearer_token_and_in_x_api_key(api: Api) -> None:
    bearer = await api.key(Role.READ)
    plaintext = bearer["Authorization"].removeprefix("Bearer ")

    by_bearer = await api.client.get("/api/v1/jobs", headers=bearer)
    by_header = await api.client.get("/api/v1/jobs", headers={"X-API-Key": plaintext})

    assert by_bearer.status_code == 200
    assert by_header.status_code == 200


async def test_the_bootstrap_admin_key_is_accepted(api: Api) -> None:
    response = await api.client.get("/api/v1/keys", headers={"X-API-Key": ADMIN_KEY})

    assert response.status_code == 200


@pytest.mark.parametrize("parameter", ["api_key", "key", "token", "access_token"])
async def test_a_key_in_the_query_string_is_refused_even_a_valid_one(
    api: Api, parameter: str
) -> None:
    response = await api.client.get("/api/v1/jobs", params={parameter: ADMIN_KEY})
    with_header = await api.client.get(
        "/api/v1/jobs", params={parameter: ADMIN_KEY}, headers=api.admin
    )

    problem = assert_unauthenticated(response)
    assert "query string" in problem["detail"]
    assert_unauthenticated(with_header)


async def test_a_revoked_key_is_refused_at_once(api: Api) -> None:
    key, plaintext = await api.conveyor.create_api_key(name="soon revoked", role=Role.READ)
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert (await api.client.get("/api/v1/jobs", headers=headers)).status_code == 200

    revoked = await api.client.post(f"/api/v1/keys/{key.id}/revoke", headers=api.admin)

    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert_unauthenticated(await api.client.get("/api/v1/jobs", headers=headers))


async def test_a_key_revoked_elsewhere_is_refused_once_the_cache_expires(api: Api) -> None:
    key, plaintext = await api.conveyor.create_api_key(name="revoked by the CLI")
    headers = {"X-API-Key": plaintext}
    assert (await api.client.get("/api/v1/jobs", headers=headers)).status_code == 200

    await (await api.store()).revoke_api_key(key.id)  # as another process would
    still_cached = await api.client.get("/api/v1/jobs", headers=headers)
    cache = api.app.state.conveyor_api.authentications
    later = cache.clock() + cache.ttl_seconds
    cache.clock = lambda: later

    assert still_cached.status_code == 200
    assert_unauthenticated(await api.client.get("/api/v1/jobs", headers=headers))


# roles ------------------------------------------------------------------------------------


async def test_a_read_key_reads_but_cannot_write(api: Api) -> None:
    writer, reader = await api.key(Role.WRITE), await api.key(Role.READ)
    job = await api.submit(writer, SQUARE_SUM)

    assert (await api.client.get(f"/api/v1/jobs/{job['id']}", headers=reader)).status_code == 200
    for method, path in [
        ("POST", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs/batch"),
        ("POST", f"/api/v1/jobs/{job['id']}/cancel"),
        ("POST", f"/api/v1/jobs/{job['id']}/retry"),
        ("DELETE", f"/api/v1/jobs/{job['id']}"),
    ]:
        body = {"jobs": [SQUARE_SUM]} if path.endswith("batch") else SQUARE_SUM
        json = body if method == "POST" else None
        response = await api.client.request(method, path, json=json, headers=reader)
        problem = assert_problem(response, 403)
        assert "write role" in problem["detail"]
    assert await api.job_count() == 1
    assert (await (await api.store()).get(job["id"])).state.value == "queued"


@pytest.mark.parametrize("role", [Role.READ, Role.WRITE])
async def test_admin_actions_are_forbidden_to_other_roles(api: Api, role: Role) -> None:
    headers = await api.key(role)
    for method, path, body in [
        ("GET", "/api/v1/keys", None),
        ("POST", "/api/v1/keys", {"name": "sneaky", "role": "admin"}),
        ("POST", "/api/v1/keys/0123456789ab/revoke", None),
        ("POST", "/api/v1/queues/math/pause", None),
        ("POST", "/api/v1/queues/math/resume", None),
    ]:
        response = await api.client.request(method, path, json=body, headers=headers)
        assert_problem(response, 403)
    keys = await api.conveyor.list_api_keys()
    assert [key.name for key in keys] == [f"{role.value} key of default"]
    queues = await api.conveyor.list_queues(tenant=None)
    assert not any(queue.paused for queue in queues)


# tenants ----------------------------------------------------------------------------------


async def test_another_tenants_job_is_not_found_on_every_job_endpoint(api: Api) -> None:
    ours, theirs = await api.key(tenant="acme"), await api.key(tenant="globex")
    job_id = (await api.submit(ours, SQUARE_SUM))["id"]
    missing_id = "01900000-0000-7000-8000-000000000000"

    for method, path in [
        ("GET", "/api/v1/jobs/{id}"),
        ("GET", "/api/v1/jobs/{id}?wait=1"),
        ("GET", "/api/v1/jobs/{id}/result"),
        ("GET", "/api/v1/jobs/{id}/events"),
        ("POST", "/api/v1/jobs/{id}/cancel"),
        ("POST", "/api/v1/jobs/{id}/retry"),
        ("DELETE", "/api/v1/jobs/{id}"),
    ]:
        other = await api.client.request(method, path.format(id=job_id), headers=theirs)
        missing = await api.client.request(method, path.format(id=missing_id), headers=theirs)
        other_problem = assert_problem(other, 404)
        missing_problem = assert_problem(missing, 404)
        assert other_problem["type"] == missing_problem["type"]
        assert other_problem["title"] == missing_problem["title"]
    assert (await (await api.store()).get(job_id, tenant="acme")).state.value == "queued"


async def test_a_list_shows_only_the_tenants_own_jobs(api: Api) -> None:
    ours, theirs = await api.key(tenant="acme"), await api.key(tenant="globex")
    mine = {(await api.submit(ours, SQUARE_SUM))["id"] for _ in range(2)}
    await api.submit(theirs, SQUARE_SUM)

    listed = (await api.client.get("/api/v1/jobs", headers=ours)).json()
    everything = (await api.client.get("/api/v1/jobs", headers=api.admin)).json()

    assert {job["id"] for job in listed["items"]} == mine
    assert len(everything["items"]) == 3


async def test_an_admin_sees_and_steers_every_tenants_jobs(api: Api) -> None:
    theirs = await api.key(tenant="globex")
    job_id = (await api.submit(theirs, SQUARE_SUM))["id"]

    seen = await api.client.get(f"/api/v1/jobs/{job_id}", headers=api.admin)
    cancelled = await api.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=api.admin)

    assert seen.status_code == 200
    assert cancelled.json()["state"] == "cancelled"


async def test_jobs_an_admin_submits_belong_to_the_admin_keys_tenant(api: Api) -> None:
    _, plaintext = await api.conveyor.create_api_key(
        name="acme admin", tenant="acme", role=Role.ADMIN
    )
    job = await api.submit({"X-API-Key": plaintext}, SQUARE_SUM)

    assert (await (await api.store()).get(job["id"], tenant="acme")).tenant == "acme"


async def test_keys_never_reach_the_access_log(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    headers = await api.key()
    plaintext = headers["Authorization"].removeprefix("Bearer ")
    with caplog.at_level(logging.INFO, logger="conveyor.api.access"):
        await api.client.get("/api/v1/jobs", headers=headers, params={"state": "queued"})
        await api.client.get("/api/v1/jobs", params={"api_key": plaintext})

    lines = [record.getMessage() for record in caplog.records]
    assert lines == ["GET /api/v1/jobs 200 " + lines[0].split()[-1], lines[1]]
    assert lines[1].startswith("GET /api/v1/jobs 401 ")
    assert all(plaintext not in line and "?" not in line for line in lines)
