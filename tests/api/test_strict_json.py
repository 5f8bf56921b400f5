"""Request bodies are parsed strictly, identically on every backend: what Python's json
module would let through (NaN, Infinity, 1e400, lone surrogates) is a 422, and so are NUL
characters and nesting deeper than 64 levels; nothing is stored."""

from __future__ import annotations

import orjson
import pytest

from tests.api.harness import Api, assert_problem


def nested(levels: int) -> object:
    """A value `levels` containers deep: {"a": {"a": ... []}}."""
    value: object = []
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"task": "demo.echo", "args": {"payload": {"x": NaN}}}', id="NaN"),
        pytest.param(b'{"task": "demo.echo", "args": {"payload": {"x": Infinity}}}', id="Infinity"),
        pytest.param(b'{"task": "demo.echo", "args": {"payload": {"x": -Infinity}}}', id="-Inf"),
        pytest.param(b'{"task": "demo.echo", "args": {"payload": {"x": 1e400}}}', id="1e400"),
        pytest.param(b'{"task": "demo.echo", "args": {"payload": {"x": "\\ud800"}}}', id="lone"),
        pytest.param(b'{"task": "demo.echo", "args": {"payload": {"x": "\xff"}}}', id="not UTF-8"),
        pytest.param(b'{"task": "demo.echo",', id="truncated"),
        pytest.param(b"[" * 5000 + b"]" * 5000, id="5000 levels"),
    ],
)
async def test_bodies_that_are_not_strict_json_are_refused(api: Api, body: bytes) -> None:
    headers = {**(await api.key()), "Content-Type": "application/json"}
    response = await api.client.post("/api/v1/jobs", content=body, headers=headers)

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["message"].startswith("invalid JSON")
    assert await api.job_count() == 0


async def test_a_nul_character_is_refused_naming_the_field(api: Api) -> None:
    headers = await api.key()
    body = {"task": "demo.echo", "args": {"payload": {"note": "a\u0000b"}}}
    response = await api.client.post("/api/v1/jobs", json=body, headers=headers)

    problem = assert_problem(response, 422, "args.payload.note")
    assert "NUL" in problem["errors"][0]["message"]
    assert await api.job_count() == 0


async def test_a_nul_character_in_a_key_is_refused(api: Api) -> None:
    headers = await api.key()
    body = {"task": "demo.echo", "args": {"payload": {"a\u0000": 1}}}
    response = await api.client.post("/api/v1/jobs", json=body, headers=headers)

    assert_problem(response, 422)
    assert await api.job_count() == 0


async def test_arguments_nested_65_levels_are_refused_and_64_accepted(api: Api) -> None:
    headers = await api.key()
    # Levels count below the args object: the payload is level 1.
    too_deep = {"task": "demo.echo", "args": {"payload": nested(65)}}
    deepest = {"task": "demo.echo", "args": {"payload": nested(64)}}

    refused = await api.client.post("/api/v1/jobs", json=too_deep, headers=headers)
    problem = assert_problem(refused, 422)
    assert problem["errors"][0]["field"].startswith("args.payload.a.a")
    assert "deeper than 64" in problem["errors"][0]["message"]
    assert await api.job_count() == 0
    accepted = await api.client.post("/api/v1/jobs", json=deepest, headers=headers)
    assert accepted.status_code == 201, accepted.text


async def test_arguments_nested_too_deep_in_a_batch_are_refused_naming_the_job(api: Api) -> None:
    headers = await api.key()
    jobs = [
        {"task": "demo.echo", "args": {"payload": {}}},
        {"task": "demo.echo", "args": {"payload": nested(65)}},
    ]
    response = await api.client.post("/api/v1/jobs/batch", json={"jobs": jobs}, headers=headers)

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"].startswith("jobs.1.args.payload.a")
    assert await api.job_count() == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_that_is_not_declared_json_gets_415(api: Api, content_type: str) -> None:
    headers = {**(await api.key()), "Content-Type": content_type}
    body = orjson.dumps({"task": "demo.echo"})
    response = await api.client.post("/api/v1/jobs", content=body, headers=headers)

    problem = assert_problem(response, 415)
    assert "application/json" in problem["detail"]
    assert await api.job_count() == 0


async def test_a_json_subtype_and_a_charset_are_accepted(api: Api) -> None:
    headers = {**(await api.key()), "Content-Type": "application/vnd.conveyor+json; charset=utf-8"}
    body = orjson.dumps({"task": "demo.echo"})
    response = await api.client.post("/api/v1/jobs", content=body, headers=headers)

    assert response.status_code == 201, response.text


async def test_a_missing_body_is_a_field_error(api: Api) -> None:
    response = await api.client.post("/api/v1/jobs", headers=await api.key())

    assert_problem(response, 422)
    assert await api.job_count() == 0
