"""A job store that goes away under a running API: 503 with Retry-After, nothing half-done.

The test starts its own PostgreSQL server, so stopping it disturbs no other test.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from conveyor.store.migrate import upgrade
from tests.api.harness import api_settings, assert_problem, running_api
from tests.backends import Backend, start_postgres
from tests.waiting import eventually

pytestmark = pytest.mark.postgres

SQUARE_SUM = {"task": "math.square_sum", "args": {"numbers": [1, 2, 3]}}


@pytest.fixture
def own_postgres() -> Iterator[Backend]:
    backend = start_postgres()
    yield backend
    backend.stop()


async def test_requests_during_a_store_outage_get_503_and_store_nothing(
    own_postgres: Backend,
) -> None:
    url = own_postgres.require_url()
    await upgrade(url)
    assert own_postgres.halt is not None
    assert own_postgres.resume is not None
    async with running_api(api_settings(url)) as api:
        headers = await api.key()
        accepted = await api.submit(headers, SQUARE_SUM)

        own_postgres.halt()
        try:
            single = await api.client.post("/api/v1/jobs", json=SQUARE_SUM, headers=headers)
            batch = await api.client.post(
                "/api/v1/jobs/batch", json={"jobs": [SQUARE_SUM] * 3}, headers=headers
            )
            listing = await api.client.get("/api/v1/jobs", headers=headers)
            ready = await api.client.get("/health/ready")
        finally:
            own_postgres.resume()

        for response in (single, batch, listing):
            assert_problem(response, 503)
            assert response.headers["retry-after"] == "5"
        assert ready.status_code == 503

        async def answered() -> httpx.Response | None:
            response = await api.client.get("/api/v1/jobs", headers=headers)
            return response if response.status_code == 200 else None

        # Once the store is back, the same process serves again, and only the job
        # accepted before the outage exists.
        page = await eventually(answered, timeout=30, message="the API to answer again")
        assert [job["id"] for job in page.json()["items"]] == [accepted["id"]]
        after = await api.client.post("/api/v1/jobs", json=SQUARE_SUM, headers=headers)
        assert after.status_code == 201
