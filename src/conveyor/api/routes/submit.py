"""POST /jobs and POST /jobs/batch: validated against the registered task, then stored.

A first submission answers 201 with `Location`; a repeat of an idempotency key with the
same body answers 200 with the same job and `Idempotent-Replayed: true`; the same key with
a different body is a 422. Keys are scoped to the caller's tenant (by the store).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from conveyor.api.problems import (
    FieldProblem,
    ProblemDescription,
    describe_error,
    listing,
    problem,
    problem_responses,
)
from conveyor.api.representations import JobBatchOut, JobOut, job_out
from conveyor.api.security import Writer
from conveyor.api.state import Facade
from conveyor.api.strict_json import StrictJSONRoute
from conveyor.api.submissions import BatchSubmission, JobSubmission
from conveyor.client import Conveyor
from conveyor.core.access import Principal
from conveyor.core.errors import InvalidArguments, InvalidSubmission, UnknownTask
from conveyor.core.job import NewJob

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=StrictJSONRoute)

REPLAYED_HEADER = "Idempotent-Replayed"
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Same as the body's idempotency_key; when both are given they must match.",
    ),
]
SUBMISSION_PROBLEMS = problem_responses(401, 403, 413, 415, 422, 503)


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    summary="Submit a job",
    responses={
        200: {"model": JobOut, "description": "An idempotent replay: the job made before"},
        **SUBMISSION_PROBLEMS,
    },
)
async def submit_job(
    *,
    submission: JobSubmission,
    conveyor: Facade,
    principal: Writer,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobOut:
    key = _one_idempotency_key(idempotency_key, submission.idempotency_key)
    options = submission.options(tenant=principal.tenant, idempotency_key=key)
    new_job = await conveyor.prepare(submission.task, submission.args, options)
    (enqueued,) = await conveyor.submit_enqueued([new_job])
    if enqueued.created:
        response.headers["Location"] = request.url_for("get_job", job_id=enqueued.job.id).path
    else:
        response.status_code = 200
        response.headers[REPLAYED_HEADER] = "true"
    return job_out(enqueued.job)


@router.post(
    "/batch",
    status_code=201,
    response_model=JobBatchOut,
    summary="Submit up to 1000 jobs atomically",
    responses={
        200: {"model": JobBatchOut, "description": "Every job was an idempotent replay"},
        **SUBMISSION_PROBLEMS,
    },
)
async def submit_batch(
    *,
    batch: BatchSubmission,
    conveyor: Facade,
    principal: Writer,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobBatchOut:
    if idempotency_key is not None:
        raise problem(
            422,
            "invalid-request",
            "a batch takes no Idempotency-Key header: give each job its own idempotency_key",
        )
    new_jobs = await _prepare_all(conveyor, batch, principal)
    enqueued = await conveyor.submit_enqueued(new_jobs)
    if not any(item.created for item in enqueued):
        response.status_code = 200
        response.headers[REPLAYED_HEADER] = "true"
    return JobBatchOut(jobs=[job_out(item.job) for item in enqueued])


def _one_idempotency_key(header: str | None, body: str | None) -> str | None:
    if header is not None and body is not None and header != body:
        raise problem(
            422,
            "invalid-request",
            "the Idempotency-Key header and the body's idempotency_key differ",
            errors=[
                FieldProblem(
                    field="Idempotency-Key", location="header", message="differs from the body"
                )
            ],
        )
    return header if header is not None else body


async def _prepare_all(
    conveyor: Conveyor, batch: BatchSubmission, principal: Principal
) -> list[NewJob]:
    """Every job validated; one problem naming every invalid job (by index) otherwise."""
    prepared: list[NewJob] = []
    rejected: list[ProblemDescription] = []
    for index, submission in enumerate(batch.jobs):
        options = submission.options(tenant=principal.tenant)
        try:
            prepared.append(await conveyor.prepare(submission.task, submission.args, options))
        except (UnknownTask, InvalidArguments, InvalidSubmission) as error:
            description = describe_error(error, ("jobs", index))
            assert description is not None  # every error of the job itself has one
            rejected.append(description)
    if rejected:
        raise _batch_problem(rejected, len(batch.jobs))
    return prepared


def _batch_problem(rejected: list[ProblemDescription], total: int) -> Exception:
    # Too-large arguments make the whole request too large; otherwise it is invalid.
    status = 413 if any(item.status == 413 for item in rejected) else 422
    errors = [error for item in rejected for error in item.errors]
    detail = f"{len(rejected)} of {total} jobs are invalid, so none was stored: {listing(errors)}"
    slug = "arguments-too-large" if status == 413 else "invalid-batch"
    return problem(status, slug, detail, errors=errors)
