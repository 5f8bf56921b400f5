"""The tasks the benchmarks run: a no-op, so that the queue's own cost is what is measured."""

from __future__ import annotations

from conveyor import Conveyor
from conveyor.config import Settings


def build_app(settings: Settings | None = None) -> Conveyor:
    app = Conveyor(settings)

    @app.task(name="bench.noop", queue="bench")
    async def noop() -> None:
        """Does nothing: every microsecond measured belongs to Conveyor."""

    return app


app = build_app()
