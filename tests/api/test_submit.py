"""POST /jobs and /jobs/batch: validation against the registered task, idempotency, atomicity."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conveyor.core.job import JobState
from tests.api.harness import Api, assert_problem

SQUARE_SUM = {"task": "math.square_sum", "args": {"numbers": [1, 2, 3]}}


async def test_a_submitted_job_is_created_with_its_location_and_the_design_shape(
    api: Api,
) -> None:
    headers = await api.key()
    response = await api.client.post("/api/v1/jobs", json=SQUARE_SUM, headers=headers)

    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert set(job) == {
        "id", "task", "queue", "state", "priority", "args", "attempt", "max_attempts",
        "run_at", "created_at", "started_at", "finished_at", "progress", "result", "error",
        "idempotency_key", "tags", "worker",
    }  # fmt: skip
    assert job["task"] == "math.square_sum"
    assert job["queue"] == "math"  # the registered task's default
    assert job["state"] == "queued"
    assert job["args"] == {"numbers": [1, 2, 3]}
    assert job["max_attempts"] == 3
    assert job["attempt"] == 0
    assert job["progress"] is None
    assert job["error"] is None
    assert job["result"] is None
    stored = await (await api.store()).get(job["id"])
    assert stored.state is JobState.QUEUED


async def test_options_are_applied(api: Api) -> None:
    headers = await api.key()
    body = {
        **SQUARE_SUM,
        "queue": "urgent",
        "priority": 7,
        "delay": 3600,
        "max_attempts": 9,
        "timeout": 12.5,
        "tags": ["a", "b"],
    }
    job = await api.submit(headers, body)

    assert (job["queue"], job["priority"], job["max_attempts"]) == ("urgent", 7, 9)
    assert job["state"] == "scheduled"
    assert job["tags"] == ["a", "b"]
    stored = await (await api.store()).get(job["id"])
    assert stored.timeout == 12.5


async def test_run_at_takes_an_rfc3339_instant_with_an_offset(api: Api) -> None:
    headers = await api.key()
    job = await api.submit(headers, {**SQUARE_SUM, "run_at": "2999-01-01T02:00:00+02:00"})

    assert job["state"] == "scheduled"
    assert job["run_at"].startswith("2999-01-01T00:00:00")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"args": {}}, "task", id="no task"),
        pytest.param({**SQUARE_SUM, "state": "completed"}, "state", id="unknown field"),
        pytest.param({**SQUARE_SUM, "tenant": "other"}, "tenant", id="tenant field"),
        pytest.param({**SQUARE_SUM, "priority": "5"}, "priority", id="priority as text"),
        pytest.param({**SQUARE_SUM, "priority": True}, "priority", id="priority as boolean"),
        pytest.param({**SQUARE_SUM, "priority": 10**9}, "priority", id="priority out of range"),
        pytest.param({**SQUARE_SUM, "delay": -1}, "delay", id="negative delay"),
        pytest.param({**SQUARE_SUM, "run_at": "2030-01-01T00:00:00"}, "run_at", id="no offset"),
        pytest.param({**SQUARE_SUM, "run_at": 1700000000}, "run_at", id="run_at as number"),
        pytest.param({**SQUARE_SUM, "run_at": "1700000000"}, "run_at", id="run_at as numeric text"),
        pytest.param(
            {**SQUARE_SUM, "run_at": "0001-01-01T00:00:00+14:00"}, "run_at", id="run_at overflow"
        ),
        pytest.param(
            {**SQUARE_SUM, "delay": 5, "run_at": "2030-01-01T00:00:00Z"}, "run_at", id="both"
        ),
        pytest.param({**SQUARE_SUM, "max_attempts": 0}, "max_attempts", id="max_attempts 0"),
        pytest.param({**SQUARE_SUM, "timeout": 0}, "timeout", id="timeout 0"),
        pytest.param({**SQUARE_SUM, "tags": "a"}, "tags", id="tags as text"),
        pytest.param({**SQUARE_SUM, "tags": [""]}, "tags.0", id="empty tag"),
        pytest.param({**SQUARE_SUM, "queue": "has space"}, "queue", id="queue with space"),
        pytest.param({**SQUARE_SUM, "args": [1, 2]}, "args", id="args as list"),
        pytest.param({**SQUARE_SUM, "idempotency_key": ""}, "idempotency_key", id="empty key"),
    ],
)
async def test_invalid_submissions_name_the_field_and_store_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    headers = await api.key()
    response = await api.client.post("/api/v1/jobs", json=body, headers=headers)

    assert_problem(response, 422, field)
    assert await api.job_count() == 0


async def test_an_unregistered_task_is_refused_saying_so(api: Api) -> None:
    headers = await api.key()
    response = await api.client.post("/api/v1/jobs", json={"task": "no.such.task"}, headers=headers)

    body = assert_problem(response, 422, "task")
    assert body["detail"] == "task 'no.such.task' is not registered by any worker"
    assert body["type"].endswith("unknown-task")
    assert await api.job_count() == 0


async def test_arguments_not_matching_the_schema_are_refused_naming_each_field(api: Api) -> None:
    headers = await api.key()
    body = {"task": "math.square_sum", "args": {"numbers": ["x", 2], "extra": 1}}
    response = await api.client.post("/api/v1/jobs", json=body, headers=headers)

    problem = assert_problem(response, 422, "args.numbers.0", "args.extra")
    assert all(error["location"] == "body" for error in problem["errors"])
    missing = await api.client.post(
        "/api/v1/jobs", json={"task": "math.square_sum"}, headers=headers
    )
    assert_problem(missing, 422, "args.numbers")
    assert await api.job_count() == 0


# idempotency ------------------------------------------------------------------------------


async def test_a_repeated_idempotency_key_returns_the_same_job(api: Api) -> None:
    headers = await api.key()
    body = {**SQUARE_SUM, "idempotency_key": "order-1"}
    first = await api.client.post("/api/v1/jobs", json=body, headers=headers)
    again = await api.client.post("/api/v1/jobs", json=body, headers=headers)

    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert await api.job_count() == 1


async def test_the_idempotency_key_header_works_like_the_body_field(api: Api) -> None:
    headers = await api.key()
    keyed = {**headers, "Idempotency-Key": "order-2"}
    first = await api.client.post("/api/v1/jobs", json=SQUARE_SUM, headers=keyed)
    by_body = await api.client.post(
        "/api/v1/jobs", json={**SQUARE_SUM, "idempotency_key": "order-2"}, headers=headers
    )

    assert first.status_code == 201
    assert first.json()["idempotency_key"] == "order-2"
    assert by_body.status_code == 200
    assert by_body.json()["id"] == first.json()["id"]


async def test_a_header_and_body_key_that_differ_are_refused(api: Api) -> None:
    headers = {**(await api.key()), "Idempotency-Key": "one"}
    body = {**SQUARE_SUM, "idempotency_key": "two"}
    response = await api.client.post("/api/v1/jobs", json=body, headers=headers)

    problem = assert_problem(response, 422, "Idempotency-Key")
    assert problem["errors"][0]["location"] == "header"
    assert await api.job_count() == 0


async def test_a_reused_key_with_a_different_body_is_refused(api: Api) -> None:
    headers = await api.key()
    await api.submit(headers, {**SQUARE_SUM, "idempotency_key": "order-3"})
    other = {"task": "math.square_sum", "args": {"numbers": [4]}, "idempotency_key": "order-3"}
    response = await api.client.post("/api/v1/jobs", json=other, headers=headers)

    body = assert_problem(response, 422)
    assert body["type"].endswith("idempotency-conflict")
    assert "order-3" in body["detail"]
    assert await api.job_count() == 1


async def test_idempotency_keys_are_scoped_to_the_tenant(api: Api) -> None:
    body = {**SQUARE_SUM, "idempotency_key": "shared"}
    ours = await api.submit(await api.key(tenant="acme"), body)
    theirs = await api.submit(await api.key(tenant="globex"), body)

    assert ours["id"] != theirs["id"]


async def test_concurrent_repeats_make_exactly_one_job(api: Api) -> None:
    headers = await api.key()
    body = {**SQUARE_SUM, "idempotency_key": "burst"}
    responses = await asyncio.gather(
        *(api.client.post("/api/v1/jobs", json=body, headers=headers) for _ in range(20))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 19 + [201], [response.text for response in responses]
    assert len({response.json()["id"] for response in responses}) == 1
    assert await api.job_count() == 1


# batches ----------------------------------------------------------------------------------


async def test_a_batch_is_stored_in_order(api: Api) -> None:
    headers = await api.key()
    jobs = [{"task": "math.square_sum", "args": {"numbers": [index]}} for index in range(3)] + [
        {"task": "demo.echo", "args": {"payload": {"a": 1}}}
    ]
    response = await api.client.post("/api/v1/jobs/batch", json={"jobs": jobs}, headers=headers)

    assert response.status_code == 201, response.text
    created = response.json()["jobs"]
    assert [job["args"] for job in created] == [job["args"] for job in jobs]
    assert [job["queue"] for job in created] == ["math", "math", "math", "echo"]
    assert await api.job_count() == 4


async def test_a_batch_with_one_invalid_job_stores_nothing_and_names_its_index(
    api: Api,
) -> None:
    headers = await api.key()
    jobs: list[dict[str, Any]] = [dict(SQUARE_SUM) for _ in range(5)]
    jobs[3] = {"task": "math.square_sum", "args": {"numbers": "many"}}
    jobs[4] = {"task": "nobody.runs.this"}
    response = await api.client.post("/api/v1/jobs/batch", json={"jobs": jobs}, headers=headers)

    body = assert_problem(response, 422, "jobs.3.args.numbers", "jobs.4.task")
    assert "2 of 5 jobs" in body["detail"]
    assert await api.job_count() == 0


async def test_a_batch_with_a_malformed_job_names_its_index(api: Api) -> None:
    headers = await api.key()
    jobs = [SQUARE_SUM, {**SQUARE_SUM, "priority": "high"}]
    response = await api.client.post("/api/v1/jobs/batch", json={"jobs": jobs}, headers=headers)

    assert_problem(response, 422, "jobs.1.priority")
    assert await api.job_count() == 0


@pytest.mark.parametrize("size", [0, 1001])
async def test_a_batch_needs_1_to_1000_jobs(api: Api, size: int) -> None:
    headers = await api.key()
    jobs = [SQUARE_SUM] * size
    response = await api.client.post("/api/v1/jobs/batch", json={"jobs": jobs}, headers=headers)

    assert_problem(response, 422, "jobs")
    assert await api.job_count() == 0


async def test_a_batch_of_replays_answers_200(api: Api) -> None:
    headers = await api.key()
    jobs = [{**SQUARE_SUM, "idempotency_key": f"batch-{index}"} for index in range(2)]
    first = await api.client.post("/api/v1/jobs/batch", json={"jobs": jobs}, headers=headers)
    again = await api.client.post("/api/v1/jobs/batch", json={"jobs": jobs}, headers=headers)

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert [job["id"] for job in again.json()["jobs"]] == [
        job["id"] for job in first.json()["jobs"]
    ]


async def test_a_batch_refuses_the_idempotency_key_header(api: Api) -> None:
    headers = {**(await api.key()), "Idempotency-Key": "whole-batch"}
    response = await api.client.post(
        "/api/v1/jobs/batch", json={"jobs": [SQUARE_SUM]}, headers=headers
    )

    assert_problem(response, 422)
    assert await api.job_count() == 0
