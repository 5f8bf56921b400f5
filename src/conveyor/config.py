"""Settings: the only reader of the environment (CONVEYOR_* variables).

Read once at an edge (CLI, `Conveyor()`, `create_app`) and passed explicitly from there.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated, Any, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from conveyor.core.errors import ConfigError

ENV_PREFIX = "CONVEYOR_"

# The event loop of the processes Conveyor runs and of a worker's own threads: uvloop where it
# is installed (auto), or always one of the two (see runtime/event_loops.py).
EventLoopChoice = Literal["auto", "uvloop", "asyncio"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: str = "sqlite:///conveyor.db"
    redis_url: str | None = None
    # Every key Conveyor writes starts with this, so that deployments can share one Redis.
    redis_prefix: str = "conveyor:"
    lease_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    retry_base_seconds: float = Field(default=2.0, ge=0)
    retry_max_seconds: float = Field(default=600.0, ge=0)
    shutdown_grace_seconds: float = Field(default=25.0, ge=0)
    monitor_interval_seconds: float = Field(default=5.0, gt=0)
    retention_days: float = Field(default=7.0, gt=0)
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    concurrency: int = Field(default=10, ge=1, le=10_000)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    admin_key: str | None = None
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    max_args_bytes: int = Field(default=262_144, gt=0)
    # Origins browsers may call the HTTP API from, comma-separated; empty keeps CORS closed.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    event_loop: EventLoopChoice = "auto"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        if not url.startswith(
            ("sqlite:", "sqlite+aiosqlite:", "postgresql:", "postgres:", "postgresql+asyncpg:")
        ):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return url

    @field_validator("redis_prefix")
    @classmethod
    def _usable_prefix(cls, prefix: str) -> str:
        if not prefix or any(character.isspace() for character in prefix):
            raise ValueError("must be non-empty, without whitespace")
        return prefix

    @field_validator("event_loop")
    @classmethod
    def _installed_loop(cls, choice: EventLoopChoice) -> EventLoopChoice:
        if choice == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError("uvloop is not installed (pip install uvloop); use auto or asyncio")
        return choice

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(origin.strip() for origin in value.split(",") if origin.strip())
        return value

    @model_validator(mode="after")
    def _heartbeat_inside_lease(self) -> Self:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError(
                "CONVEYOR_HEARTBEAT_SECONDS must be shorter than CONVEYOR_LEASE_SECONDS "
                f"(got {self.heartbeat_seconds} and {self.lease_seconds}), or leases "
                "expire between heartbeats"
            )
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("CONVEYOR_RETRY_MAX_SECONDS must be >= CONVEYOR_RETRY_BASE_SECONDS")
        return self


def load_settings(**overrides: Any) -> Settings:
    """Read the environment, apply explicit overrides, and name the variable on error."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, given)) from None


def describe_validation_error(error: ValidationError, overrides: dict[str, Any]) -> str:
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        message = str(item["msg"]).removeprefix("Value error, ")
        if not field:
            problems.append(message)
            continue
        source = (
            f"--{field.replace('_', '-')}" if field in overrides else (ENV_PREFIX + field.upper())
        )
        problems.append(f"{source}: {message} (got {item.get('input')!r})")
    return "invalid configuration: " + "; ".join(problems)
