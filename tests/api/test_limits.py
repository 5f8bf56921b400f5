"""Size limits: request bodies (declared or chunked), job arguments, list pages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from tests.api.harness import Api, api_settings, assert_problem, running_api

BODY_LIMIT = 4096
ARGS_LIMIT = 1024


async def test_a_declared_body_over_the_limit_gets_413(database_url: str) -> None:
    settings = api_settings(database_url, max_body_bytes=BODY_LIMIT)
    async with running_api(settings) as api:
        body = {"task": "demo.echo", "args": {"payload": {"text": "x" * BODY_LIMIT}}}
        response = await api.client.post("/api/v1/jobs", json=body, headers=await api.key())

        problem = assert_problem(response, 413)
        assert str(BODY_LIMIT) in problem["detail"]
        assert await api.job_count() == 0


async def test_a_chunked_body_over_the_limit_gets_413_while_it_is_read(
    database_url: str,
) -> None:
    settings = api_settings(database_url, max_body_bytes=BODY_LIMIT)
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"task": "demo.echo", "args": {"payload": {"text": "'
        for index in range(100):
            sent.append(index)
            yield b"x" * 1000
        yield b'"}}}'

    async with running_api(settings) as api:
        headers = {**(await api.key()), "Content-Type": "application/json"}
        response = await api.client.post("/api/v1/jobs", content=chunks(), headers=headers)

        assert "content-length" not in response.request.headers
        assert_problem(response, 413)
        # Refused as soon as it went over, not after reading all 100 kB.
        assert len(sent) < 10
        assert await api.job_count() == 0


async def test_a_chunked_body_under_the_limit_is_accepted(database_url: str) -> None:
    settings = api_settings(database_url, max_body_bytes=BODY_LIMIT)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"task": "demo.echo", '
        yield b'"args": {"payload": {"text": "small"}}}'

    async with running_api(settings) as api:
        headers = {**(await api.key()), "Content-Type": "application/json"}
        response = await api.client.post("/api/v1/jobs", content=chunks(), headers=headers)

        assert response.status_code == 201, response.text


async def test_arguments_over_the_limit_get_413_naming_args(database_url: str) -> None:
    settings = api_settings(database_url, max_args_bytes=ARGS_LIMIT)
    async with running_api(settings) as api:
        body = {"task": "demo.echo", "args": {"payload": {"text": "x" * ARGS_LIMIT}}}
        response = await api.client.post("/api/v1/jobs", json=body, headers=await api.key())

        problem = assert_problem(response, 413, "args")
        assert problem["type"].endswith("arguments-too-large")
        assert await api.job_count() == 0


async def test_arguments_over_the_limit_in_a_batch_get_413_naming_the_job(
    database_url: str,
) -> None:
    settings = api_settings(database_url, max_args_bytes=ARGS_LIMIT)
    async with running_api(settings) as api:
        jobs = [
            {"task": "demo.echo", "args": {}},
            {"task": "demo.echo", "args": {"payload": {"text": "x" * ARGS_LIMIT}}},
        ]
        response = await api.client.post(
            "/api/v1/jobs/batch", json={"jobs": jobs}, headers=await api.key()
        )

        assert_problem(response, 413, "jobs.1.args")
        assert await api.job_count() == 0


async def test_a_page_is_at_most_500_jobs(api: Api) -> None:
    headers = await api.key()
    too_many = await api.client.get("/api/v1/jobs", params={"limit": 501}, headers=headers)
    most = await api.client.get("/api/v1/jobs", params={"limit": 500}, headers=headers)

    problem = assert_problem(too_many, 422, "limit")
    assert problem["errors"][0]["location"] == "query"
    assert most.status_code == 200


async def test_the_default_body_limit_admits_a_large_batch(api: Api) -> None:
    jobs = [{"task": "demo.echo", "args": {"payload": {"n": index}}} for index in range(1000)]
    body = orjson.dumps({"jobs": jobs})
    assert len(body) < api.app.state.conveyor_api.settings.max_body_bytes

    response = await api.client.post(
        "/api/v1/jobs/batch",
        content=body,
        headers={**(await api.key()), "Content-Type": "application/json"},
    )

    assert response.status_code == 201, response.text
    assert await api.job_count() == 1000
