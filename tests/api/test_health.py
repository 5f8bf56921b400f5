"""/health, /health/ready and /metrics: unauthenticated, for orchestrators and Prometheus."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.core.job import JobState
from tests.api.harness import Api, api_settings, assert_problem, running_api
from tests.api.tasks import registry
from tests.backends import Backend, create_database, drop_database, url_for_database
from tests.contract.worker_harness import running_worker
from tests.waiting import wait_for_state

UNREACHABLE_POSTGRES = "postgresql://postgres@127.0.0.1:1/nowhere"
SQUARE_SUM = {"task": "math.square_sum", "args": {"numbers": [1, 2, 3]}}


async def test_liveness_needs_no_key(api: Api) -> None:
    response = await api.client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_reports_each_check(api: Api) -> None:
    response = await api.client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"store": {"status": "ok"}, "broker": {"status": "ok"}},
    }


async def test_an_unreachable_store_is_reported_not_fatal() -> None:
    # The app starts although the store does not answer, and says so.
    async with running_api(api_settings(UNREACHABLE_POSTGRES), register=False) as api:
        ready = await api.client.get("/health/ready")
        alive = await api.client.get("/health")
        jobs = await api.client.get("/api/v1/jobs", headers=api.admin)
        submitted = await api.client.post("/api/v1/jobs", json=SQUARE_SUM, headers=api.admin)
        metrics = await api.client.get("/metrics")

    assert ready.status_code == 503
    assert ready.headers["retry-after"] == "5"
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["store"]["status"] == "unavailable"
    assert "127.0.0.1:1" in body["checks"]["store"]["detail"]
    assert body["checks"]["broker"]["status"] == "unavailable"
    assert alive.status_code == 200
    for response in (jobs, submitted, metrics):
        problem = assert_problem(response, 503)
        assert response.headers["retry-after"] == "5"
        assert "127.0.0.1" not in problem["detail"]  # where the store is stays in the log


@pytest.fixture
async def unmigrated_postgres_url(postgres_server: Backend) -> AsyncIterator[str]:
    server_url = postgres_server.require_url()
    name = f"conveyor_bare_{secrets.token_hex(6)}"
    await create_database(server_url, name)
    try:
        yield url_for_database(server_url, name)
    finally:
        await drop_database(server_url, name)


@pytest.mark.postgres
async def test_an_unmigrated_store_is_reported_not_fatal(unmigrated_postgres_url: str) -> None:
    async with running_api(api_settings(unmigrated_postgres_url), register=False) as api:
        ready = await api.client.get("/health/ready")
        jobs = await api.client.get("/api/v1/jobs", headers=api.admin)

    assert ready.status_code == 503
    assert "conveyor db upgrade" in ready.json()["checks"]["store"]["detail"]
    assert_problem(jobs, 503)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_show_jobs_counters_run_times_and_workers(api: Api) -> None:
    headers = await api.key()
    done = [await api.submit(headers, SQUARE_SUM) for _ in range(2)]
    failed = await api.submit(headers, {"task": "always.refuses"})
    await api.submit(headers, {"task": "demo.echo", "delay": 600})
    waiting = await api.submit(headers, {"task": "demo.echo", "queue": "later"})
    cancelled = await api.submit(headers, {"task": "demo.echo", "queue": "later"})
    await api.client.post(f"/api/v1/jobs/{cancelled['id']}/cancel", headers=headers)
    async with running_worker(api.database_url, registry, queues=("math", "default")):
        for job in done:
            await wait_for_state(await api.store(), job["id"], JobState.COMPLETED)
        await wait_for_state(await api.store(), failed["id"], JobState.FAILED)
        response = await api.client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found[("conveyor_jobs", (("queue", "math"), ("state", "completed")))] == 2
    assert found[("conveyor_jobs", (("queue", "default"), ("state", "failed")))] == 1
    assert found[("conveyor_jobs", (("queue", "echo"), ("state", "scheduled")))] == 1
    assert found[("conveyor_jobs", (("queue", "later"), ("state", "queued")))] == 1
    assert found[("conveyor_queue_oldest_job_age_seconds", (("queue", "later"),))] >= 0
    assert found[("conveyor_jobs_enqueued_total", (("queue", "math"),))] == 2
    assert found[("conveyor_jobs_completed_total", (("queue", "math"),))] == 2
    assert found[("conveyor_jobs_failed_total", (("queue", "default"),))] == 1
    assert found[("conveyor_jobs_cancelled_total", (("queue", "later"),))] == 1
    assert found[("conveyor_job_run_seconds_count", (("queue", "math"),))] == 2
    assert found[("conveyor_job_run_seconds_bucket", (("le", "+Inf"), ("queue", "math")))] == 2
    assert found[("conveyor_workers_alive", ())] == 1
    assert waiting["state"] == "queued"


async def test_run_time_buckets_are_cumulative(api: Api) -> None:
    headers = await api.key()
    job = await api.submit(headers, SQUARE_SUM)
    async with running_worker(api.database_url, registry):
        await wait_for_state(await api.store(), job["id"], JobState.COMPLETED)

    found = samples((await api.client.get("/metrics")).text)
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in found.items()
        if name == "conveyor_job_run_seconds_bucket"
    )
    counts = [value for _, value in buckets]
    assert counts == sorted(counts)  # never decreasing
    assert counts[-1] == 1


UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


async def test_redis_down_degrades_readiness_and_submissions_still_succeed(
    database_url: str,
) -> None:
    settings = api_settings(database_url, redis_url=UNREACHABLE_REDIS)
    async with running_api(settings) as api:
        headers = await api.key()
        ready = await api.client.get("/health/ready")
        submitted = await api.client.post("/api/v1/jobs", json=SQUARE_SUM, headers=headers)

    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["checks"]["store"] == {"status": "ok"}
    assert body["checks"]["broker"]["status"] == "degraded"
    assert "127.0.0.1:1" in body["checks"]["broker"]["detail"]
    assert submitted.status_code == 201  # the store alone accepts jobs
