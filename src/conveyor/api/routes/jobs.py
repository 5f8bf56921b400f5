"""Reading and steering jobs: list, get (with long-poll), result, cancel, retry, delete.

Every lookup is scoped to the caller's tenant (admins see every tenant), so another
tenant's job answers 404 exactly like an id that does not exist.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from conveyor.api.problems import problem_responses
from conveyor.api.representations import (
    JobOut,
    JobPageOut,
    ResultOut,
    job_out,
    page_out,
    result_out,
)
from conveyor.api.security import Reader, Writer, tenant_scope
from conveyor.api.shutdown import until_shutdown
from conveyor.api.state import ApiState, Facade, State
from conveyor.api.strict_json import StrictJSONRoute
from conveyor.api.submissions import Instant, Name
from conveyor.client import Conveyor
from conveyor.core.errors import JobNotFound
from conveyor.core.job import Job, JobState
from conveyor.ports import JobFilter

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=StrictJSONRoute)

MAX_PAGE = 500
MAX_WAIT_SECONDS = 60.0
# How often a long-poll (and an event stream) looks at the job again.
POLL_INTERVAL_SECONDS = 0.25
_JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

JobId = Annotated[str, Path(description="The job's id (a UUIDv7)", max_length=100)]
Cursor = Annotated[str, Query(max_length=1000, description="`next_cursor` of the last page")]
READ_PROBLEMS = problem_responses(401, 403, 404, 422, 503)
WRITE_PROBLEMS = problem_responses(401, 403, 404, 409, 422, 503)


def checked_job_id(job_id: str) -> str:
    """`job_id` if it is shaped like one; a malformed id is simply not found."""
    if not _JOB_ID.fullmatch(job_id):
        raise JobNotFound(job_id)
    return job_id


async def visible_job(job_id: JobId, conveyor: Facade, principal: Reader) -> Job:
    """The job, if the caller may see it (a dependency: 404 before any response starts)."""
    return await conveyor.get(checked_job_id(job_id), tenant=tenant_scope(principal))


VisibleJob = Annotated[Job, Depends(visible_job)]


@router.get(
    "",
    response_model=JobPageOut,
    summary="List jobs, newest first",
    responses=problem_responses(401, 403, 422, 503),
)
async def list_jobs(
    *,
    conveyor: Facade,
    principal: Reader,
    state: Annotated[list[JobState] | None, Query(description="repeat for several")] = None,
    task: Annotated[Name | None, Query()] = None,
    queue: Annotated[Name | None, Query()] = None,
    tag: Annotated[Name | None, Query()] = None,
    created_after: Annotated[Instant | None, Query()] = None,
    created_before: Annotated[Instant | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Cursor | None = None,
) -> JobPageOut:
    job_filter = JobFilter(
        tenant=tenant_scope(principal),
        states=tuple(state or ()),
        task=task,
        queue=queue,
        tag=tag,
        created_after=created_after,
        created_before=created_before,
    )
    return page_out(await conveyor.list_jobs(job_filter, limit=limit, cursor=cursor))


@router.get(
    "/{job_id}",
    response_model=JobOut,
    summary="One job; ?wait= long-polls",
    responses=READ_PROBLEMS,
)
async def get_job(
    *,
    job_id: JobId,
    conveyor: Facade,
    principal: Reader,
    request: Request,
    state: State,
    wait: Annotated[
        float | None,
        Query(gt=0, le=MAX_WAIT_SECONDS, description="seconds to wait for a terminal state"),
    ] = None,
) -> JobOut:
    checked = checked_job_id(job_id)
    scope = tenant_scope(principal)
    if wait is None:
        return job_out(await conveyor.get(checked, tenant=scope))
    return job_out(
        await _long_poll(conveyor, request, state=state, job_id=checked, tenant=scope, wait=wait)
    )


async def _long_poll(
    conveyor: Conveyor,
    request: Request,
    *,
    state: ApiState,
    job_id: str,
    tenant: str | None,
    wait: float,
) -> Job:
    """The job once it is terminal, or as it is when `wait` seconds have passed (or the
    server stops)."""
    latest: Job | None = None
    watching = conveyor.watch(job_id, tenant=tenant, interval=POLL_INTERVAL_SECONDS)
    try:
        async with asyncio.timeout(wait):
            async for job in until_shutdown(watching, state.shutdown):
                latest = job
                if await request.is_disconnected():
                    break
    except TimeoutError:
        pass
    return latest if latest is not None else await conveyor.get(job_id, tenant=tenant)


@router.get(
    "/{job_id}/result",
    response_model=ResultOut,
    summary="A job's result or error",
    responses=READ_PROBLEMS,
)
async def get_result(job: VisibleJob) -> ResultOut:
    return result_out(job)


@router.post(
    "/{job_id}/cancel", response_model=JobOut, summary="Cancel a job", responses=WRITE_PROBLEMS
)
async def cancel_job(job_id: JobId, conveyor: Facade, principal: Writer) -> JobOut:
    return job_out(await conveyor.cancel(checked_job_id(job_id), tenant=tenant_scope(principal)))


@router.post(
    "/{job_id}/retry",
    response_model=JobOut,
    summary="Retry a failed or cancelled job",
    responses=WRITE_PROBLEMS,
)
async def retry_job(job_id: JobId, conveyor: Facade, principal: Writer) -> JobOut:
    return job_out(await conveyor.retry(checked_job_id(job_id), tenant=tenant_scope(principal)))


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a finished job",
    responses=WRITE_PROBLEMS,
)
async def delete_job(job_id: JobId, conveyor: Facade, principal: Writer) -> Response:
    await conveyor.delete(checked_job_id(job_id), tenant=tenant_scope(principal))
    return Response(status_code=204)
