"""The broker's connection to Redis, and what it does when Redis does not answer.

Every command goes through `RedisLink.call`. A failure (connection, timeout, server error)
starts a backoff with jitter during which Redis is not tried at all (callers fall back to the
job store at once), and it means Redis may now lack ids: an announcement was skipped, or a
pop's reply was lost with the ids it removed. So the first command that gets through again
first marks Redis incomplete (deletes the epoch key), which makes workers claim from the
store too until the reconciler has refilled Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import ResponseError

from conveyor.brokers.redis_clients import (
    COMMAND_TIMEOUT_SECONDS,
    DEFAULT_PREFIX,
    UNREACHABLE,
    address_of,
    fail_fast_client,
)
from conveyor.outages import Breaker, Outage

log = logging.getLogger("conveyor.brokers.redis")

T = TypeVar("T")


class RedisUnreachable(Exception):
    """Redis did not answer (or is in its backoff after failing): use the store instead."""


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Every key the broker uses, under the deployment's prefix."""

    prefix: str = DEFAULT_PREFIX

    @property
    def queues(self) -> str:
        """A set: the name of every queue a job id was published on."""
        return f"{self.prefix}queues"

    @property
    def queue_prefix(self) -> str:
        return f"{self.prefix}queue:"

    def queue(self, name: str) -> str:
        """A sorted set: the ready job ids of one queue."""
        return f"{self.queue_prefix}{name}"

    @property
    def epoch(self) -> str:
        """Present while Redis is known to hold every ready id (see redis_reconciling)."""
        return f"{self.prefix}epoch"

    @property
    def sweep(self) -> str:
        """The refill in progress: set when it starts, deleted when Redis is marked
        incomplete again (so a refill that overlapped the loss does not count)."""
        return f"{self.prefix}sweep"


class RedisLink:
    """A Redis client with the broker's failure policy (see the module docstring)."""

    def __init__(self, url: str, keys: RedisKeys) -> None:
        # A failure must reach us at once, so that claims fall back to the store.
        self.client = fail_fast_client(
            url, decode_responses=True, client_name=f"conveyor:{keys.prefix}"
        )
        self.keys = keys
        self.address = address_of(self.client)
        self._breaker = Breaker(
            Outage(
                log,
                f"Redis at {self.address}",
                meanwhile="using the job store until it returns",
                back="restored",
                back_level=logging.INFO,
            )
        )
        self._may_lack_ids = False
        self._policy_checked = False

    async def call(
        self,
        command: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = COMMAND_TIMEOUT_SECONDS,
    ) -> T:
        """Run a command unless Redis is in its backoff; any failure starts (or extends) it.

        Raises RedisUnreachable either way, so that the caller falls back to the store.
        `deadline` None: the command has its own (pops run in a task of their own).
        """
        if self._breaker.closed_for_now:
            raise RedisUnreachable(f"Redis at {self.address} is backing off")
        try:
            if self._may_lack_ids:
                await self._mark_incomplete()
            async with asyncio.timeout(deadline):
                result = await command()
        except UNREACHABLE as error:
            self._may_lack_ids = True
            self._breaker.failed(error)
            raise RedisUnreachable(str(error)) from error
        self._breaker.succeeded()
        if not self._policy_checked:
            with contextlib.suppress(RedisUnreachable):
                await self.check_eviction_policy()
        return result

    def missed(self) -> None:
        """Ids could not be written back (a put-back failed): Redis may lack them."""
        self._may_lack_ids = True

    async def _mark_incomplete(self) -> None:
        async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
            await self.client.delete(self.keys.epoch, self.keys.sweep)
        self._may_lack_ids = False
        log.info(
            "Redis at %s may lack job ids from while it was unreachable: workers also claim "
            "from the store until the reconciler has refilled it",
            self.address,
        )

    async def ping(self) -> None:
        """Raise unless Redis answers now (whatever the backoff says): for readiness checks."""
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                await self.client.ping()
        except UNREACHABLE as error:
            raise ConnectionError(f"Redis at {self.address} does not answer: {error}") from None

    async def check_eviction_policy(self) -> None:
        """Warn unless Redis keeps every key under memory pressure (evicted ids wait for the
        reconciler); raises RedisUnreachable, and looks again later, if Redis is away."""
        self._policy_checked = True
        try:
            policy = await self.call(self._eviction_policy)
        except RedisUnreachable:
            self._policy_checked = False  # look again once Redis answers
            raise
        if policy is None:
            log.info("could not read Redis's maxmemory-policy (CONFIG is not allowed)")
        elif policy != "noeviction":
            log.warning(
                "Redis at %s has maxmemory-policy %r: under memory pressure it may evict "
                "queued job ids, which then wait for the reconciler to republish them. "
                "Set maxmemory-policy to noeviction.",
                self.address,
                policy,
            )

    @property
    def policy_checked(self) -> bool:
        return self._policy_checked

    async def _eviction_policy(self) -> str | None:
        try:
            reply: dict[Any, Any] = await self.client.config_get("maxmemory-policy")
        except ResponseError:  # CONFIG renamed or forbidden (some managed services)
            return None
        policy = reply.get("maxmemory-policy")
        return str(policy) if policy is not None else None

    async def close(self) -> None:
        await self.client.aclose()
