"""The API under test: a real app (lifespan run) behind httpx, on a real store."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from conveyor.api import create_app
from conveyor.client import Conveyor
from conveyor.config import Settings, load_settings
from conveyor.core.access import Role
from conveyor.core.job import DEFAULT_TENANT
from conveyor.ports import JobStore
from tests.api.tasks import registry

ADMIN_KEY = "test-admin-" + secrets.token_hex(8)
BASE_URL = "http://conveyor.test"
PROBLEM = "application/problem+json"

Headers = Mapping[str, str]


def api_settings(database_url: str, **overrides: Any) -> Settings:
    return load_settings(database_url=database_url, admin_key=ADMIN_KEY, **overrides)


@dataclass
class Api:
    client: httpx.AsyncClient
    app: FastAPI
    conveyor: Conveyor  # the facade the app serves through
    database_url: str
    admin: Headers

    async def store(self) -> JobStore:
        return await self.conveyor.store()

    async def key(self, role: Role = Role.WRITE, tenant: str = DEFAULT_TENANT) -> Headers:
        """Headers carrying a new key of `role` for `tenant`."""
        _, plaintext = await self.conveyor.create_api_key(
            name=f"{role.value} key of {tenant}", tenant=tenant, role=role
        )
        return {"Authorization": f"Bearer {plaintext}"}

    async def submit(self, headers: Headers, body: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a job that must be accepted; its JSON."""
        response = await self.client.post("/api/v1/jobs", json=body, headers=headers)
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    async def job_count(self) -> int:
        """Jobs of every tenant: to show that a refused request stored nothing."""
        counts = await (await self.store()).counts(tenant=None)
        return sum(counts.by_state.values())


@asynccontextmanager
async def running_api(settings: Settings, *, register: bool = True) -> AsyncIterator[Api]:
    """The app with its lifespan running, and a client that talks to it in-process."""
    conveyor = Conveyor(settings)
    app = create_app(settings, conveyor=conveyor)
    async with app.router.lifespan_context(app):
        if register:
            await (await conveyor.store()).register_tasks(registry.infos())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            yield Api(client, app, conveyor, settings.database_url, admin)


def assert_problem(response: httpx.Response, status: int, *fields: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with `status`, naming each of `fields`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["type"]
    assert body["instance"] == response.request.url.path
    named = {error["field"] for error in body.get("errors", [])}
    for field in fields:
        assert field in named, f"{field} not in {named}"
    return body
