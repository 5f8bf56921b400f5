"""Run as a process: enqueue one task COUNT times at once with one idempotency key.

    python -m tests.integration.enqueue_burst DATABASE_URL KEY COUNT

Prints one job id per line. Several of these run at the same time in a test.
"""

from __future__ import annotations

import asyncio
import sys

from conveyor import Conveyor
from conveyor.config import load_settings


async def burst(database_url: str, key: str, count: int) -> list[str]:
    app = Conveyor(load_settings(database_url=database_url))
    try:
        jobs = await asyncio.gather(
            *(app.enqueue("itest.noop", idempotency_key=key) for _ in range(count))
        )
        return [job.id for job in jobs]
    finally:
        await app.close()


if __name__ == "__main__":
    url, key, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print("\n".join(asyncio.run(burst(url, key, count))))
