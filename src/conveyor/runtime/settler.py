"""The settler: writes the outcomes of finished runs, many per statement.

Finished runs add a Settlement; one loop writes everything pending with one
`store.settle` call. While a write is in flight new outcomes pile up, so batches grow by
themselves under load and stay at one job when the worker is idle.

An outcome is never dropped because the store is down: it is kept and written once the
store is back. An outcome whose claim no longer holds the lease (the store did not apply
it) is forgotten: the job belongs to another worker now, and fencing kept its result safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from conveyor.core.errors import StoreUnavailable
from conveyor.ports import JobStore, Settlement
from conveyor.runtime.backoff import Backoff, Outage

log = logging.getLogger(__name__)


class Settler:
    """Collects settlements and writes them; `on_done` hears of each one written or dropped."""

    def __init__(
        self,
        store: JobStore,
        *,
        worker_id: str,
        on_done: Callable[[Sequence[Settlement]], None],
    ) -> None:
        self._store = store
        self._on_done = on_done
        self._pending: list[Settlement] = []
        self._arrived = asyncio.Event()
        self._writing = asyncio.Lock()
        self._backoff = Backoff()
        self._outage = Outage(log, f"worker {worker_id} settling outcomes")

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, settlement: Settlement) -> None:
        self._pending.append(settlement)
        self._arrived.set()

    async def run(self) -> None:
        """Write outcomes as they arrive, until cancelled (which never loses one)."""
        while True:
            await self._arrived.wait()
            if not await self.flush():
                await asyncio.sleep(self._backoff.next_delay())

    async def drain(self, timeout: float) -> bool:
        """Write until nothing is pending, riding out outages for up to `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                # Flush at least once: it waits for a write already in flight, whose
                # outcomes are not pending meanwhile but may come back if it fails.
                while True:
                    if not await self.flush():
                        await asyncio.sleep(self._backoff.next_delay())
                    elif not self._pending:
                        break
        return not self._pending

    async def flush(self) -> bool:
        """Write everything pending in one statement; False if the store is unavailable."""
        async with self._writing:
            batch, self._pending = self._pending, []
            self._arrived.clear()
            if not batch:
                return True
            try:
                applied = await self._store.settle(batch)
            except StoreUnavailable as error:
                self._keep(batch)
                self._outage.failed(error)
                return False
            except asyncio.CancelledError:
                # The write may or may not have happened; writing it again is harmless,
                # since a second settle of the same claim matches no row.
                self._keep(batch)
                raise
            except Exception:
                log.exception("settling %d outcomes failed; writing them one by one", len(batch))
                applied = await self._settle_separately(batch)
            self._outage.recovered()
            self._backoff.reset()
        self._report(batch, applied)
        return True

    async def _settle_separately(self, batch: Sequence[Settlement]) -> frozenset[str]:
        """Isolate a settlement the store rejects, so it cannot block all the others.

        One that still fails is given up: its job is no longer renewed, so the monitor
        rescues it when its lease expires and it runs again. Its id counts as applied
        here only so that it is not also reported as a lost lease.
        """
        applied: set[str] = set()
        for settlement in batch:
            try:
                applied |= await self._store.settle([settlement])
            except StoreUnavailable:
                self._keep([settlement])
            except Exception:
                log.exception(
                    "job %s: its outcome cannot be stored; it will run again once its lease "
                    "expires",
                    settlement.job_id,
                )
                applied.add(settlement.job_id)
        return frozenset(applied)

    def _keep(self, batch: Sequence[Settlement]) -> None:
        self._pending[:0] = batch
        self._arrived.set()

    def _report(self, batch: Sequence[Settlement], applied: frozenset[str]) -> None:
        kept = {id(settlement) for settlement in self._pending}
        done = [settlement for settlement in batch if id(settlement) not in kept]
        for settlement in done:
            if settlement.job_id not in applied:
                log.warning(
                    "job %s: outcome %s discarded: this worker no longer holds its lease "
                    "(the job was rescued or taken over)",
                    settlement.job_id,
                    type(settlement.outcome).__name__,
                )
        self._on_done(done)
