"""GET /jobs/{id}/events on PostgreSQL + Redis: progress events come over pub/sub, as soon
as the handler reports, although the worker writes progress to the store only minutes later.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.api.harness import Api, api_settings, running_api
from tests.api.streaming import Event, open_stream
from tests.api.tasks import registry
from tests.backends import Deployment
from tests.contract.worker_harness import flag, new_flag, running_worker

pytestmark = pytest.mark.parametrize(
    "backend_name",
    [pytest.param("postgres+redis", id="postgres+redis", marks=pytest.mark.postgres)],
)

PROGRESS_WRITES_APART = 300.0  # seconds: longer than any deadline of these tests


@pytest.fixture
async def api(deployment: Deployment) -> AsyncIterator[Api]:
    settings = api_settings(
        deployment.database_url,
        redis_url=deployment.redis_url,
        redis_prefix=deployment.redis_prefix,
    )
    async with running_api(settings) as running:
        yield running


async def test_progress_events_arrive_before_the_store_has_the_progress(
    api: Api, deployment: Deployment
) -> None:
    headers = await api.key()
    first, second = new_flag(), new_flag()
    job = await api.submit(
        headers, {"task": "demo.stages", "args": {"first": first, "second": second}}
    )

    async with open_stream(api.app, f"/api/v1/jobs/{job['id']}/events", headers) as stream:
        assert await stream.next_event() == Event("state", job)  # following: subscribed

        worker = running_worker(
            deployment, registry, progress_interval_seconds=PROGRESS_WRITES_APART
        )
        async with worker:
            running = await stream.next_event()
            started = await stream.next_event()
            flag(first).set()
            most = await stream.next_event()
            stored = await (await api.store()).get(job["id"])
            flag(second).set()
            rest = await stream.remaining()

    assert running is not None
    assert (running.name, running.data["state"]) == ("state", "running")
    assert started == Event("progress", {"percent": 25.0, "message": "started"})
    assert most == Event("progress", {"percent": 75.0, "message": "most of it"})
    assert stored.progress is None  # only pub/sub can have brought those two
    assert [(event.name, event.data["state"]) for event in rest] == [("state", "completed")]
