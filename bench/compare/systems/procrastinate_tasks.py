"""Procrastinate's app and no-op task for the comparison: the task records that it ran, and
nothing else. The workers (`procrastinate --app=...`) import `app`; the adapter builds its own.
"""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector  # type: ignore[import-not-found]

from bench.compare.completions import record
from bench.compare.system import QUEUE

DSN_VARIABLE = "BENCH_PROCRASTINATE_DSN"
TASK = "bench.noop"
# Procrastinate's guidance for short jobs is a pool about as large as the concurrency; two
# workers of 100 would need more than PostgreSQL's 100 connections, so each process gets the
# 20 connections Conveyor's pool may open (10 + 10 overflow). The LISTEN connection is extra.
POOL_MIN_SIZE = 10
POOL_MAX_SIZE = 20


async def noop() -> None:
    record()


def build_app(dsn: str, min_size: int = POOL_MIN_SIZE, max_size: int = POOL_MAX_SIZE) -> App:
    app = App(connector=PsycopgConnector(conninfo=dsn, min_size=min_size, max_size=max_size))
    app.task(name=TASK, queue=QUEUE)(noop)
    return app


app = build_app(os.environ.get(DSN_VARIABLE, ""))  # the workers': the adapter sets the DSN
