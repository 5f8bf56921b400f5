"""Unauthenticated endpoints for orchestrators: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from conveyor.api.metrics import render
from conveyor.api.problems import RETRY_AFTER_SECONDS, problem_responses
from conveyor.api.state import Facade
from conveyor.core.errors import ConfigError, StoreUnavailable

router = APIRouter(tags=["health"])


class Alive(BaseModel):
    status: Literal["ok"]


class Check(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    detail: str | None = None


class Readiness(BaseModel):
    # "degraded": an optional dependency (Redis) is down, and the platform works without it.
    status: Literal["ok", "degraded", "unavailable"]
    checks: dict[str, Check]


@router.get("/health", response_model=Alive, summary="Liveness: the process answers")
async def health() -> Alive:
    return Alive(status="ok")


@router.get(
    "/health/ready",
    response_model=Readiness,
    response_model_exclude_none=True,
    summary="Readiness: the store and the broker answer (Redis down only degrades it)",
    responses={503: {"model": Readiness, "description": "A needed dependency does not answer"}},
)
async def ready(conveyor: Facade, response: Response) -> Readiness:
    try:
        problems = await conveyor.check_health()
    except (StoreUnavailable, ConfigError) as error:
        # The store could not even be opened, so the broker (built on it) was not asked.
        problems = {"store": str(error), "broker": "not checked: the store is unavailable"}
    optional = conveyor.optional_checks
    checks = {
        name: _check(problem, optional=name in optional) for name, problem in problems.items()
    }
    if all(check.status == "ok" for check in checks.values()):
        return Readiness(status="ok", checks=checks)
    if all(check.status != "unavailable" for check in checks.values()):
        return Readiness(status="degraded", checks=checks)
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return Readiness(status="unavailable", checks=checks)


def _check(problem: str | None, *, optional: bool) -> Check:
    if problem is None:
        return Check(status="ok")
    return Check(status="degraded" if optional else "unavailable", detail=problem)


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics (text format)",
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}},
        **problem_responses(503),
    },
)
async def metrics(conveyor: Facade) -> Response:
    return Response(render(await conveyor.metrics()), media_type=CONTENT_TYPE_LATEST)
