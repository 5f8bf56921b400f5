"""Reading and steering jobs over HTTP: get, long-poll, result, list, cancel, retry, delete."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from conveyor.core.job import JobState
from tests.api.harness import Api, assert_problem
from tests.api.tasks import registry
from tests.contract.worker_harness import flag, new_flag, running_worker
from tests.waiting import eventually, wait_for_state

SQUARE_SUM = {"task": "math.square_sum", "args": {"numbers": [1, 2, 3]}}


async def test_a_job_is_read_by_id(api: Api) -> None:
    headers = await api.key()
    job = await api.submit(headers, SQUARE_SUM)

    response = await api.client.get(f"/api/v1/jobs/{job['id']}", headers=headers)

    assert response.status_code == 200
    assert response.json() == job


@pytest.mark.parametrize("job_id", ["01900000-0000-7000-8000-000000000000", "nope", "%00"])
async def test_an_unknown_or_malformed_id_is_not_found(api: Api, job_id: str) -> None:
    response = await api.client.get(f"/api/v1/jobs/{job_id}", headers=await api.key())

    problem = assert_problem(response, 404)
    assert problem["type"].endswith("job-not-found")


async def test_a_completed_job_shows_its_result(api: Api) -> None:
    headers = await api.key()
    job = await api.submit(headers, SQUARE_SUM)
    async with running_worker(api.database_url, registry):
        await wait_for_state(await api.store(), job["id"], JobState.COMPLETED)

    read = (await api.client.get(f"/api/v1/jobs/{job['id']}", headers=headers)).json()
    result = await api.client.get(f"/api/v1/jobs/{job['id']}/result", headers=headers)

    assert read["state"] == "completed"
    assert read["attempt"] == 1
    assert read["started_at"]
    assert read["finished_at"]
    assert read["worker"]
    assert result.json() == {"id": job["id"], "state": "completed", "result": 14.0, "error": None}


async def test_a_failed_job_shows_its_latest_error(api: Api) -> None:
    headers = await api.key()
    job = await api.submit(headers, {"task": "always.refuses"})
    async with running_worker(api.database_url, registry):
        await wait_for_state(await api.store(), job["id"], JobState.FAILED)

    result = (await api.client.get(f"/api/v1/jobs/{job['id']}/result", headers=headers)).json()

    assert result["state"] == "failed"
    assert result["result"] is None
    assert result["error"]["message"] == "the input can never work"
    assert result["error"]["type"].endswith("NonRetryableError")
    assert result["error"]["attempt"] == 1


# long-poll --------------------------------------------------------------------------------


async def test_wait_returns_as_soon_as_the_job_is_terminal(api: Api) -> None:
    headers = await api.key()
    release = new_flag()
    job = await api.submit(headers, {"task": "demo.steps", "args": {"release": release}})
    async with running_worker(api.database_url, registry):
        waiting = asyncio.create_task(
            api.client.get(f"/api/v1/jobs/{job['id']}", params={"wait": 60}, headers=headers)
        )
        await wait_for_state(await api.store(), job["id"], JobState.RUNNING)
        assert not waiting.done()
        flag(release).set()
        response = await asyncio.wait_for(waiting, timeout=30)

    assert response.status_code == 200
    assert response.json()["state"] == "completed"
    assert response.json()["result"] == "finished"


async def test_wait_answers_the_job_as_it_is_when_time_runs_out(api: Api) -> None:
    headers = await api.key()
    job = await api.submit(headers, SQUARE_SUM)  # no worker: it stays queued

    response = await api.client.get(
        f"/api/v1/jobs/{job['id']}", params={"wait": 0.3}, headers=headers
    )

    assert response.status_code == 200
    assert response.json()["state"] == "queued"


@pytest.mark.parametrize("wait", ["0", "-1", "61", "soon"])
async def test_wait_must_be_between_0_and_60_seconds(api: Api, wait: str) -> None:
    headers = await api.key()
    job = await api.submit(headers, SQUARE_SUM)

    response = await api.client.get(
        f"/api/v1/jobs/{job['id']}", params={"wait": wait}, headers=headers
    )

    assert_problem(response, 422, "wait")


# listing ----------------------------------------------------------------------------------


async def test_pages_follow_the_cursor_newest_first_without_overlap(api: Api) -> None:
    headers = await api.key()
    submitted = [(await api.submit(headers, SQUARE_SUM))["id"] for _ in range(5)]

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.client.get("/api/v1/jobs", params=params, headers=headers)).json()
        seen += [job["id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == list(reversed(submitted))


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA",
        "A" * 48,  # 36 NUL characters
    ],
)
async def test_a_cursor_this_server_did_not_issue_is_refused(api: Api, cursor: str) -> None:
    response = await api.client.get(
        "/api/v1/jobs", params={"cursor": cursor}, headers=await api.key()
    )

    assert_problem(response, 422, "cursor")


async def test_filters_select_by_state_task_queue_tag_and_creation_time(api: Api) -> None:
    headers = await api.key()
    before = datetime.now(UTC) - timedelta(minutes=1)
    square = await api.submit(headers, {**SQUARE_SUM, "tags": ["red"]})
    echo = await api.submit(headers, {"task": "demo.echo", "tags": ["blue"]})
    cancelled = await api.submit(headers, {"task": "demo.echo"})
    await api.client.post(f"/api/v1/jobs/{cancelled['id']}/cancel", headers=headers)

    async def ids(**params: str | list[str]) -> set[str]:
        response = await api.client.get("/api/v1/jobs", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return {job["id"] for job in response.json()["items"]}

    assert await ids(task="math.square_sum") == {square["id"]}
    assert await ids(queue="echo") == {echo["id"], cancelled["id"]}
    assert await ids(tag="blue") == {echo["id"]}
    assert await ids(state="cancelled") == {cancelled["id"]}
    assert await ids(state=["cancelled", "queued"]) == {
        square["id"], echo["id"], cancelled["id"]
    }  # fmt: skip
    assert len(await ids(created_after=before.isoformat())) == 3
    assert await ids(created_before=before.isoformat()) == set()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "sleeping"}, "state.0"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_after": "2024-01-01T00:00:00"}, "created_after"),
        ({"created_before": "0.5"}, "created_before"),  # not read as a Unix timestamp
        ({"task": "a\u0000b"}, "task"),
        ({"limit": 0}, "limit"),
    ],
)
async def test_bad_filters_are_refused_naming_the_parameter(
    api: Api, params: dict[str, str | int], field: str
) -> None:
    response = await api.client.get("/api/v1/jobs", params=params, headers=await api.key())

    problem = assert_problem(response, 422, field)
    assert problem["errors"][0]["location"] == "query"


# cancel, retry, delete --------------------------------------------------------------------


async def test_cancel_retry_and_delete_follow_the_job_states(api: Api) -> None:
    headers = await api.key()
    job_id = (await api.submit(headers, SQUARE_SUM))["id"]
    path = f"/api/v1/jobs/{job_id}"

    assert_problem(await api.client.post(f"{path}/retry", headers=headers), 409)
    assert_problem(await api.client.delete(path, headers=headers), 409)
    cancelled = await api.client.post(f"{path}/cancel", headers=headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    problem = assert_problem(await api.client.post(f"{path}/cancel", headers=headers), 409)
    assert "cancelled" in problem["detail"]

    retried = await api.client.post(f"{path}/retry", headers=headers)
    assert retried.json()["state"] == "queued"
    assert retried.json()["attempt"] == 0
    await api.client.post(f"{path}/cancel", headers=headers)
    deleted = await api.client.delete(path, headers=headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_problem(await api.client.get(path, headers=headers), 404)
    assert await api.job_count() == 0


async def test_a_failed_job_is_retried_and_runs_again(api: Api) -> None:
    headers = await api.key()
    job_id = (await api.submit(headers, {"task": "always.refuses"}))["id"]
    async with running_worker(api.database_url, registry):
        await wait_for_state(await api.store(), job_id, JobState.FAILED)
        retried = await api.client.post(f"/api/v1/jobs/{job_id}/retry", headers=headers)
        assert retried.json()["state"] == "queued"

        async def ran_twice() -> bool:
            job = await (await api.store()).get(job_id)
            return job.state is JobState.FAILED and len(job.errors) == 2

        await eventually(ran_twice, timeout=30, message="the retried job to fail again")


async def test_cancelling_a_running_job_requests_it(api: Api) -> None:
    headers = await api.key()
    job_id = (await api.submit(headers, {"task": "demo.steps", "args": {"release": new_flag()}}))[
        "id"
    ]
    async with running_worker(api.database_url, registry):
        await wait_for_state(await api.store(), job_id, JobState.RUNNING)
        response = await api.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=headers)
        assert response.status_code == 200
        await wait_for_state(await api.store(), job_id, JobState.CANCELLED)
