"""The demo app: `conveyor worker --app examples.app:app` runs these tasks.

The task functions live in plain modules; this file is the one place that names them as
tasks and sets their options, so the functions stay easy to call and test on their own.
"""

from __future__ import annotations

from conveyor import Conveyor, RetryPolicy, Settings
from examples import arithmetic, demo, reports

# The demo retries quickly, so that `demo.flaky` shows its retries within seconds.
DEMO_RETRY = RetryPolicy(base_seconds=1, max_seconds=10)


def create_app(settings: Settings | None = None) -> Conveyor:
    """The demo app with its tasks; settings from the CONVEYOR_* environment by default."""
    app = Conveyor(settings)
    app.task(name="math.square_sum", queue="math")(arithmetic.square_sum)
    app.task(name="math.cube_sum", queue="math")(arithmetic.cube_sum)
    app.task(name="reports.csv", queue="reports", timeout=600)(reports.csv_report)
    app.task(name="demo.sleep")(demo.sleep)
    app.task(name="demo.flaky", max_attempts=5, retry=DEMO_RETRY)(demo.flaky)
    return app


app = create_app()
