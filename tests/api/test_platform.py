"""Queues (pause and resume), registered tasks, live workers, statistics."""

from __future__ import annotations

from conveyor.core.access import Role
from conveyor.core.job import JobState
from tests.api.harness import Api, assert_problem
from tests.api.tasks import registry
from tests.contract.worker_harness import running_worker
from tests.waiting import wait_for_state

SQUARE_SUM = {"task": "math.square_sum", "args": {"numbers": [1, 2, 3]}}
ALL_STATES = {state.value for state in JobState}


async def test_queues_show_counts_by_state_and_the_oldest_queued_age(api: Api) -> None:
    headers = await api.key()
    await api.submit(headers, SQUARE_SUM)
    await api.submit(headers, {**SQUARE_SUM, "delay": 600})

    response = await api.client.get("/api/v1/queues", headers=await api.key(Role.READ))

    assert response.status_code == 200
    queues = {queue["name"]: queue for queue in response.json()["items"]}
    math = queues["math"]
    assert set(math["counts"]) == ALL_STATES
    assert (math["counts"]["queued"], math["counts"]["scheduled"]) == (1, 1)
    assert math["paused"] is False
    assert math["oldest_queued_age_seconds"] >= 0
    assert queues["echo"]["oldest_queued_age_seconds"] is None  # a registered task's queue


async def test_queue_counts_are_the_tenants_own(api: Api) -> None:
    await api.submit(await api.key(tenant="globex"), SQUARE_SUM)

    ours = await api.client.get("/api/v1/queues", headers=await api.key(tenant="acme"))
    everyone = await api.client.get("/api/v1/queues", headers=api.admin)

    def queued(response_items: list[dict[str, object]]) -> object:
        return next(queue for queue in response_items if queue["name"] == "math")["counts"]

    assert queued(ours.json()["items"]) == dict.fromkeys(ALL_STATES, 0)
    assert queued(everyone.json()["items"])["queued"] == 1  # type: ignore[index]


async def test_a_paused_queue_is_not_claimed_until_resumed(api: Api) -> None:
    headers = await api.key()
    paused = await api.client.post("/api/v1/queues/math/pause", headers=api.admin)
    assert paused.status_code == 200, paused.text
    assert paused.json() == {"name": "math", "paused": True}
    held = await api.submit(headers, SQUARE_SUM)
    other = await api.submit(headers, {"task": "demo.echo"})

    async with running_worker(api.database_url, registry):
        # The worker runs the other queue's job, so it has looked at the paused one too.
        await wait_for_state(await api.store(), other["id"], JobState.COMPLETED)
        assert (await (await api.store()).get(held["id"])).state is JobState.QUEUED
        listed = (await api.client.get("/api/v1/queues", headers=headers)).json()["items"]
        assert next(queue for queue in listed if queue["name"] == "math")["paused"] is True

        resumed = await api.client.post("/api/v1/queues/math/resume", headers=api.admin)
        assert resumed.json() == {"name": "math", "paused": False}
        await wait_for_state(await api.store(), held["id"], JobState.COMPLETED)


async def test_a_queue_name_with_whitespace_is_refused(api: Api) -> None:
    response = await api.client.post("/api/v1/queues/bad%20name/pause", headers=api.admin)

    assert_problem(response, 422, "queue")
    assert not any(queue.paused for queue in await api.conveyor.list_queues(tenant=None))


async def test_tasks_are_listed_with_their_argument_schemas(api: Api) -> None:
    response = await api.client.get("/api/v1/tasks", headers=await api.key(Role.READ))

    tasks = {task["name"]: task for task in response.json()["items"]}
    assert set(tasks) == set(registry.names())
    square_sum = tasks["math.square_sum"]
    assert (square_sum["queue"], square_sum["max_attempts"]) == ("math", 3)
    assert square_sum["args_schema"]["properties"]["numbers"]["type"] == "array"
    assert square_sum["args_schema"]["required"] == ["numbers"]
    assert square_sum["options"]["runs_in"] == "event loop"


async def test_live_workers_are_listed(api: Api) -> None:
    headers = await api.key(Role.READ)
    assert (await api.client.get("/api/v1/workers", headers=headers)).json() == {"items": []}

    async with running_worker(api.database_url, registry, concurrency=3):
        workers = (await api.client.get("/api/v1/workers", headers=headers)).json()["items"]

    assert len(workers) == 1
    worker = workers[0]
    assert worker["id"] == "test-worker"
    assert worker["concurrency"] == 3
    assert worker["pid"] > 0
    assert worker["host"]
    assert worker["last_heartbeat_at"] is not None
    assert worker["running_jobs"] == 0


async def test_stats_count_what_happened(api: Api) -> None:
    headers = await api.key()
    done = [await api.submit(headers, SQUARE_SUM) for _ in range(3)]
    failed = await api.submit(headers, {"task": "always.refuses"})
    await api.submit(headers, {**SQUARE_SUM, "delay": 600})
    async with running_worker(api.database_url, registry):
        for job in done:
            await wait_for_state(await api.store(), job["id"], JobState.COMPLETED)
        await wait_for_state(await api.store(), failed["id"], JobState.FAILED)

    response = await api.client.get("/api/v1/stats", params={"window": 600}, headers=headers)

    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["window_seconds"] == 600
    assert stats["by_state"]["completed"] == 3
    assert stats["by_state"]["failed"] == 1
    assert stats["by_state"]["scheduled"] == 1
    assert stats["by_task"]["math.square_sum"]["completed"] == 3
    assert stats["success_rate"] == 0.75
    assert sum(bucket["completed"] for bucket in stats["throughput"]) == 3
    assert sum(bucket["failed"] for bucket in stats["throughput"]) == 1
    assert stats["run_seconds"]["count"] == 4
    assert stats["wait_seconds"]["p50"] is not None


async def test_stats_are_the_tenants_own(api: Api) -> None:
    await api.submit(await api.key(tenant="globex"), SQUARE_SUM)

    ours = await api.client.get("/api/v1/stats", headers=await api.key(tenant="acme"))
    everyone = await api.client.get("/api/v1/stats", headers=api.admin)

    assert ours.json()["by_state"].get("queued", 0) == 0
    assert everyone.json()["by_state"]["queued"] == 1


async def test_the_stats_window_is_one_minute_to_one_day_in_seconds(api: Api) -> None:
    headers = await api.key()
    for window in ("59", "86401", "15m"):
        response = await api.client.get("/api/v1/stats", params={"window": window}, headers=headers)
        assert_problem(response, 422, "window")
    default = await api.client.get("/api/v1/stats", headers=headers)
    assert default.json()["window_seconds"] == 900


async def test_keys_are_created_listed_and_revoked_by_an_admin(api: Api) -> None:
    created = await api.client.post(
        "/api/v1/keys", json={"name": "ci", "tenant": "acme", "role": "read"}, headers=api.admin
    )
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["key"].startswith("cvk_")
    assert (key["name"], key["tenant"], key["role"]) == ("ci", "acme", "read")
    new_key = {"X-API-Key": key["key"]}
    assert (await api.client.get("/api/v1/jobs", headers=new_key)).status_code == 200

    listed = (await api.client.get("/api/v1/keys", headers=api.admin)).json()["items"]
    assert [item["id"] for item in listed] == [key["id"]]
    assert "key" not in listed[0]
    assert "digest" not in listed[0]

    revoked = await api.client.post(f"/api/v1/keys/{key['id']}/revoke", headers=api.admin)
    assert revoked.json()["revoked_at"] is not None
    assert (await api.client.get("/api/v1/jobs", headers=new_key)).status_code == 401


async def test_bad_key_requests_are_refused(api: Api) -> None:
    for body, field in [
        ({"name": "", "role": "read"}, "name"),
        ({"name": "x", "role": "owner"}, "role"),
        ({"name": "x", "tenant": "has space"}, "tenant"),
        ({"name": "x", "secret": "mine"}, "secret"),
    ]:
        response = await api.client.post("/api/v1/keys", json=body, headers=api.admin)
        assert_problem(response, 422, field)
    assert await api.conveyor.list_api_keys() == []

    for key_id in ("0123456789ab", "not-a-key-id"):
        missing = await api.client.post(f"/api/v1/keys/{key_id}/revoke", headers=api.admin)
        assert_problem(missing, 404)
