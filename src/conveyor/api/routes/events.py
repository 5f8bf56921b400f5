"""GET /jobs/{id}/events: Server-Sent Events that follow one job until it is terminal.

`event: state` carries the job object, first as it is now and then on every state change;
`event: progress` carries {"percent", "message"} when progress moves within a state. The
stream ends after the terminal state's event, or when the server stops. FastAPI sends a
keep-alive comment after 15 idle seconds and stops the stream when the client goes away.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from conveyor.api.problems import problem_responses
from conveyor.api.representations import job_out, progress_out
from conveyor.api.routes.jobs import POLL_INTERVAL_SECONDS, VisibleJob
from conveyor.api.security import Reader, tenant_scope
from conveyor.api.shutdown import until_shutdown
from conveyor.api.state import Facade, State
from conveyor.api.strict_json import StrictJSONRoute
from conveyor.core.errors import JobNotFound, StoreUnavailable
from conveyor.core.job import Job

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=StrictJSONRoute)
logger = logging.getLogger("conveyor.api")


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    summary="Follow a job: state changes and progress, until it is terminal",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def job_events(
    job: VisibleJob, conveyor: Facade, principal: Reader, state: State
) -> AsyncIterable[ServerSentEvent]:
    previous: Job | None = None
    watching = until_shutdown(
        conveyor.watch(job.id, tenant=tenant_scope(principal), interval=POLL_INTERVAL_SECONDS),
        state.shutdown,
    )
    try:
        async for current in watching:
            event = event_between(previous, current)
            if event is not None:
                yield event
            previous = current
    except JobNotFound:
        return  # deleted while followed: nothing more will happen to it
    except StoreUnavailable as error:
        # The response has started, so no 503 is possible: say why the stream ends.
        logger.warning("ending an event stream: %s", error)
        yield ServerSentEvent(event="error", data={"detail": "the job store is unavailable"})


def event_between(previous: Job | None, current: Job) -> ServerSentEvent | None:
    """The event that tells a follower what changed from `previous` to `current`."""
    if previous is None or previous.state is not current.state:
        return ServerSentEvent(event="state", data=job_out(current))
    progress = progress_out(current.progress)
    if progress is not None and current.progress != previous.progress:
        return ServerSentEvent(event="progress", data=progress)
    return None
