"""Redis clients that fail fast, and addresses safe to log.

Every Redis user in Conveyor (the broker's link, the signals) rides out outages with its
own backoff (conveyor.outages), so a client must not retry or wait on its own: a failure has
to reach the caller at once. Commands get asyncio deadlines of COMMAND_TIMEOUT_SECONDS.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

DEFAULT_PREFIX = "conveyor:"
COMMAND_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 2.0

UNREACHABLE = (RedisError, OSError, TimeoutError)
"""What a command raises when Redis is away (or answers with an error)."""


def fail_fast_client(url: str, *, decode_responses: bool, client_name: str) -> Redis:
    """A client with no retries and a connect timeout; commands get asyncio deadlines.

    `client_name` tells our connections apart in CLIENT LIST; one given in the URL wins.
    """
    return Redis.from_url(
        url,
        decode_responses=decode_responses,
        socket_timeout=None,  # every command has an asyncio deadline instead
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
        client_name=client_name,
    )


def address_of(client: Redis) -> str:
    """host:port/db, never the password: it appears in logs and health checks."""
    options = client.connection_pool.connection_kwargs
    if "path" in options:
        return f"unix:{options['path']}"
    return f"{options.get('host', 'localhost')}:{options.get('port', 6379)}/{options.get('db', 0)}"
