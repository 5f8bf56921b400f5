"""What every request handler shares: the facade, the settings, the authentication cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from conveyor.api.authentication_cache import AuthenticationCache
from conveyor.api.shutdown import Shutdown
from conveyor.client import Conveyor
from conveyor.config import Settings


@dataclass(frozen=True, slots=True)
class ApiState:
    conveyor: Conveyor
    settings: Settings
    authentications: AuthenticationCache
    shutdown: Shutdown = field(default_factory=Shutdown)


def attach_state(app: FastAPI, state: ApiState) -> None:
    app.state.conveyor_api = state
    app.state.conveyor_shutdown = state.shutdown


def state_of(request: Request) -> ApiState:
    state = request.app.state.conveyor_api
    assert isinstance(state, ApiState)
    return state


# Dependencies are async on purpose: FastAPI runs a plain `def` dependency in a thread pool,
# which cost more than the rest of a submission.
async def api_state(request: Request) -> ApiState:
    return state_of(request)


async def facade(request: Request) -> Conveyor:
    return state_of(request).conveyor


State = Annotated[ApiState, Depends(api_state)]
Facade = Annotated[Conveyor, Depends(facade)]
