"""Opening a deployment's backends: where a URL becomes a store, a broker and signals.

Only the facade (`conveyor.client`) uses this module. It opens one `Backend` per event
loop, because database drivers bind connections to the loop that made them.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.brokers.database import DatabaseBroker
from conveyor.brokers.redis import RedisBroker
from conveyor.brokers.redis_signals import RedisSignals
from conveyor.brokers.silent_signals import SilentSignals
from conveyor.config import Settings
from conveyor.ports import Broker, Signals
from conveyor.store.sql import SqlJobStore


@dataclass(slots=True)
class Backend:
    """The store, the broker and the signals one event loop of the facade uses."""

    store: SqlJobStore
    broker: Broker
    signals: Signals

    @classmethod
    async def open(cls, settings: Settings) -> Backend:
        store = await open_store(settings)
        return cls(store, broker_for(settings, store), signals_for(settings))

    async def close(self) -> None:
        await self.signals.close()
        await self.broker.close()
        await self.store.close()


async def open_store(settings: Settings) -> SqlJobStore:
    """A new store with its own connections."""
    return await SqlJobStore.open(settings.database_url)


def broker_for(settings: Settings, store: SqlJobStore) -> Broker:
    """Redis when it is configured, the database itself otherwise."""
    if settings.redis_url:
        return RedisBroker(
            store,
            url=settings.redis_url,
            prefix=settings.redis_prefix,
            poll_interval=settings.poll_interval_seconds,
        )
    return DatabaseBroker(store, poll_interval=settings.poll_interval_seconds)


def signals_for(settings: Settings) -> Signals:
    """Redis pub/sub (under the broker's key prefix) when Redis is configured; else none."""
    if settings.redis_url:
        return RedisSignals(url=settings.redis_url, prefix=settings.redis_prefix)
    return SilentSignals()
