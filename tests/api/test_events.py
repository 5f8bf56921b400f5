"""GET /jobs/{id}/events: the job's states and progress as Server-Sent Events."""

from __future__ import annotations

import asyncio

from conveyor.api.shutdown import begin_shutdown
from conveyor.core.job import JobState
from tests.api.harness import Api, assert_problem
from tests.api.streaming import Event, EventStream, open_stream
from tests.api.tasks import registry
from tests.contract.worker_harness import flag, new_flag, running_worker
from tests.waiting import wait_for_state


async def until_progress(stream: EventStream, percent: float) -> list[Event]:
    """Events up to the first that shows `percent` (in a progress or a state event)."""
    seen = []
    while (event := await stream.next_event()) is not None:
        seen.append(event)
        progress = event.data if event.name == "progress" else event.data["progress"]
        if progress is not None and progress["percent"] == percent:
            return seen
    raise AssertionError(f"the stream ended before {percent} %: {seen}")


async def test_a_followed_job_streams_its_states_and_progress_until_it_ends(api: Api) -> None:
    headers = await api.key()
    first, second = new_flag(), new_flag()
    job = await api.submit(
        headers, {"task": "demo.stages", "args": {"first": first, "second": second}}
    )
    path = f"/api/v1/jobs/{job['id']}/events"

    async with open_stream(api.app, path, headers) as stream:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        opening = await stream.next_event()
        assert opening == Event("state", job)  # the job as it is when following starts

        async with running_worker(api.database_url, registry):
            until_started = await until_progress(stream, 25)
            flag(first).set()
            moved = await stream.next_event()
            flag(second).set()
            rest = await stream.remaining()

    assert [event.data["state"] for event in until_started if event.name == "state"] == ["running"]
    # Progress within a state is its own event, without the whole job.
    assert moved == Event("progress", {"percent": 75.0, "message": "most of it"})
    assert [event.name for event in rest][-1] == "state"
    assert rest[-1].data["state"] == "completed"
    assert rest[-1].data["result"] == "finished"
    assert all(event.name == "progress" for event in rest[:-1])


async def test_a_finished_job_streams_one_event_and_ends(api: Api) -> None:
    headers = await api.key()
    job = await api.submit(headers, {"task": "math.square_sum", "args": {"numbers": [2]}})
    async with running_worker(api.database_url, registry):
        await wait_for_state(await api.store(), job["id"], JobState.COMPLETED)

    response = await api.client.get(f"/api/v1/jobs/{job['id']}/events", headers=headers)

    assert response.status_code == 200
    assert response.text.startswith("event: state\n")
    async with open_stream(api.app, f"/api/v1/jobs/{job['id']}/events", headers) as stream:
        events = await stream.remaining()
    assert [(event.name, event.data["state"]) for event in events] == [("state", "completed")]
    assert events[0].data["result"] == 4.0


async def test_the_stream_stops_when_the_client_goes_away(api: Api) -> None:
    headers = await api.key()
    job = await api.submit(headers, {"task": "math.square_sum", "args": {"numbers": [2]}})

    # No worker: the job stays queued and the stream would go on; leaving the block
    # disconnects, and open_stream fails unless the app then finishes within its deadline.
    async with open_stream(api.app, f"/api/v1/jobs/{job['id']}/events", headers) as stream:
        assert (await stream.next_event()) == Event("state", job)


async def test_the_stream_ends_when_the_server_stops(api: Api) -> None:
    headers = await api.key()
    job = await api.submit(headers, {"task": "math.square_sum", "args": {"numbers": [2]}})

    async with open_stream(api.app, f"/api/v1/jobs/{job['id']}/events", headers) as stream:
        assert (await stream.next_event()) == Event("state", job)
        begin_shutdown(api.app)

        assert await stream.remaining() == []  # ended cleanly, without a terminal state


async def test_a_long_poll_answers_at_once_while_the_server_stops(api: Api) -> None:
    headers = await api.key()
    job = await api.submit(headers, {"task": "math.square_sum", "args": {"numbers": [2]}})

    begin_shutdown(api.app)
    # Without the shutdown this would wait the full 60 s and trip the 30 s bound.
    response = await asyncio.wait_for(
        api.client.get(f"/api/v1/jobs/{job['id']}", params={"wait": 60}, headers=headers),
        timeout=30,
    )

    assert response.status_code == 200
    assert response.json()["state"] == "queued"


async def test_following_an_unknown_job_is_a_404_problem(api: Api) -> None:
    response = await api.client.get(
        "/api/v1/jobs/01900000-0000-7000-8000-000000000000/events", headers=await api.key()
    )

    assert_problem(response, 404)
