"""Problem details for every failure, the OpenAPI description, and CORS."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.api.harness import BASE_URL, Api, api_settings, assert_problem, running_api


async def test_an_unknown_path_is_a_404_problem(api: Api) -> None:
    response = await api.client.get("/api/v1/nothing-here", headers=api.admin)

    problem = assert_problem(response, 404)
    assert problem["type"] == "about:blank"
    assert problem["title"] == "Not Found"
    assert "/api/v1/nothing-here" in problem["detail"]


async def test_a_wrong_method_is_a_405_problem_with_allow(api: Api) -> None:
    response = await api.client.put("/api/v1/jobs", headers=api.admin)

    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, POST"
    job_path = "/api/v1/jobs/01900000-0000-7000-8000-000000000000"
    on_a_job = await api.client.post(job_path, headers=api.admin)
    assert_problem(on_a_job, 405)
    assert on_a_job.headers["allow"] == "DELETE, GET"


async def test_an_unexpected_error_is_a_500_without_internals(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_api(api_settings(database_url)) as api:

        async def broken() -> None:
            raise RuntimeError("secret internals")

        api.app.add_api_route("/broken", broken)
        transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            with caplog.at_level(logging.ERROR, logger="conveyor.api"):
                response = await client.get("/broken")

    problem = assert_problem(response, 500)
    assert "secret" not in response.text
    assert "RuntimeError" not in response.text
    assert problem["detail"] == "an unexpected error occurred; it was logged"
    logged = [record for record in caplog.records if record.name == "conveyor.api"]
    assert logged
    assert logged[0].exc_info is not None


async def test_the_openapi_schema_declares_and_applies_both_security_schemes(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()

    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["apiKey"]["in"] == "header"
    assert schemes["apiKey"]["name"] == "X-API-Key"
    either: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if path.startswith("/api/v1"):
                assert operation.get("security") == either, f"{method} {path}"
            else:
                assert "security" not in operation, f"{method} {path}"


async def test_the_openapi_schema_describes_problem_responses(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()

    submit = schema["paths"]["/api/v1/jobs"]["post"]
    problem = submit["responses"]["422"]["content"]
    assert problem == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
    assert set(submit["responses"]) >= {"200", "201", "401", "403", "413", "415", "422", "503"}
    assert "Problem" in schema["components"]["schemas"]
    assert "FieldProblem" in schema["components"]["schemas"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    job = schema["components"]["schemas"]["JobOut"]
    assert set(job["required"]) >= {"id", "state", "args", "error", "progress"}


async def test_the_docs_page_is_served(api: Api) -> None:
    response = await api.client.get("/docs")

    assert response.status_code == 200
    assert "/openapi.json" in response.text


async def test_cors_is_closed_unless_origins_are_configured(database_url: str) -> None:
    preflight = {
        "Origin": "https://dashboard.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with running_api(api_settings(database_url)) as closed:
        refused = await closed.client.options("/api/v1/jobs", headers=preflight)
        plain = await closed.client.get("/health", headers={"Origin": preflight["Origin"]})
    settings = api_settings(database_url, cors_origins="https://dashboard.example")
    async with running_api(settings) as open_api:
        allowed = await open_api.client.options("/api/v1/jobs", headers=preflight)
        other = await open_api.client.options(
            "/api/v1/jobs", headers={**preflight, "Origin": "https://evil.example"}
        )

    assert "access-control-allow-origin" not in refused.headers
    assert "access-control-allow-origin" not in plain.headers
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://dashboard.example"
    assert "access-control-allow-origin" not in other.headers
