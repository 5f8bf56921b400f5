"""Every API test gets the app on a fresh store (SQLite and PostgreSQL), tasks registered."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from conveyor.config import ENV_PREFIX
from tests.api.harness import Api, api_settings, running_api


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CONVEYOR_* variable of the developer's shell may change what a test sees."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(api_settings(database_url)) as running:
        yield running
