"""The HTTP API's factory: `create_app(settings)` builds a FastAPI app around one facade.

It never imports user code: submissions are validated against the schemas workers
register in the store. The lifespan opens the store and closes it; an unreachable store
at startup is logged, not fatal, so the process can report it on /health/ready (503) and
serve as soon as the store answers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from conveyor.api.access_log import AccessLog
from conveyor.api.authentication_cache import AuthenticationCache
from conveyor.api.limits import BodySizeLimit
from conveyor.api.problems import FieldProblem, Problem, install_problem_handlers
from conveyor.api.routes import events, health, jobs, keys, platform, submit
from conveyor.api.state import ApiState, attach_state
from conveyor.client import Conveyor
from conveyor.config import Settings, load_settings
from conveyor.core.errors import ConfigError, StoreUnavailable

API_PREFIX = "/api/v1"
logger = logging.getLogger("conveyor.api")


def create_app(settings: Settings | None = None, *, conveyor: Conveyor | None = None) -> FastAPI:
    """The API for `settings` (read from the environment when None).

    `conveyor` is the facade to serve through (one is built from the settings otherwise);
    the app's lifespan opens its store and closes it.
    """
    if conveyor is None:
        conveyor = Conveyor(settings if settings is not None else load_settings())
    settings = conveyor.settings if settings is None else settings
    app = FastAPI(
        title="Conveyor",
        summary="Durable asynchronous jobs: submit, follow, cancel and retry them over HTTP.",
        version="1",
        lifespan=_lifespan(conveyor),
    )
    attach_state(app, ApiState(conveyor, settings, AuthenticationCache()))
    install_problem_handlers(app)
    app.include_router(_api_router(), prefix=API_PREFIX)
    app.include_router(health.router)
    _add_middleware(app, settings)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _api_router() -> APIRouter:
    router = APIRouter()
    # Fixed paths before /jobs/{job_id}, so "batch" is never taken for an id.
    for module in (submit, jobs, events, platform, keys):
        router.include_router(module.router)
    return router


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    # Added innermost first: the access log sees every answer, the 413s included.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
            expose_headers=["Location", "Idempotent-Replayed", "Retry-After"],
        )
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog)


def _lifespan(conveyor: Conveyor) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await conveyor.store()
        except (StoreUnavailable, ConfigError) as error:
            # Unreachable or not migrated yet: /health/ready says so, requests answer 503,
            # and the store is opened again on the next request.
            logger.warning("starting without the job store (it is retried per request): %s", error)
        try:
            yield
        finally:
            await conveyor.close()

    return lifespan


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, plus the Problem schema the error responses refer to."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (FieldProblem, Problem):
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(definition.pop("$defs", {}))
            components[model.__name__] = definition
        app.openapi_schema = schema
    return app.openapi_schema
