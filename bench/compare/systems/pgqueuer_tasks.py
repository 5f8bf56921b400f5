"""PgQueuer's worker factory and no-op entrypoint for the comparison: the entrypoint records
that it ran, and nothing else. Workers run `pgq run ...pgqueuer_tasks:create_pgqueuer`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from pgqueuer import PgQueuer  # type: ignore[import-not-found]
from pgqueuer.db import AsyncpgDriver  # type: ignore[import-not-found]

from bench.compare.completions import record

DSN_VARIABLE = "PGDSN"  # the variable PgQueuer's own CLI reads the DSN from
ENTRYPOINT = "bench.noop"


async def noop(job: object) -> None:
    record()


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[Any]:
    # One direct connection, not a pool: PgQueuer's guide wants the worker's LISTEN on a
    # connection of its own.
    connection = await asyncpg.connect(os.environ[DSN_VARIABLE])
    try:
        pgq = PgQueuer(AsyncpgDriver(connection))
        pgq.entrypoint(ENTRYPOINT)(noop)
        yield pgq
    finally:
        await connection.close()
