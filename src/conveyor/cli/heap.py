"""A process Conveyor owns keeps its start-up heap out of the garbage collector's full passes.

Once a worker is ready, its heap holds hundreds of thousands of objects (modules, classes,
SQLAlchemy's and pydantic's schemas, the app's tasks) that live as long as the process.
CPython's full collection walks every one of them each time it runs, and the objects a
busy worker allocates per job trigger one every few thousand jobs: draining 20 000 no-op
jobs with 2 workers on PostgreSQL, each worker spent ~0.6 s of its ~3.5 s of CPU in 6 full
passes. `gc.freeze()` moves what exists at that moment to a permanent generation that
collections skip; the same drain then spent ~0.13 s in them, and ~30 % less worker CPU
per job overall.

Only in processes Conveyor owns (`conveyor worker`): inside an application's own process
(`await app.run_worker()`) the application decides how its heap is collected. What is
frozen is never collected as a cycle afterwards, which costs nothing for a start-up heap
that lives until the process exits.
"""

from __future__ import annotations

import asyncio
import gc


async def freeze_once(ready: asyncio.Event) -> None:
    """Freeze the heap as it is when `ready` is set (the process has started up)."""
    await ready.wait()
    # No gc.collect() first: a full pass here takes ~0.1 s while the first claims wait, and
    # the one that last ran during start-up found almost nothing (~50 objects) to free.
    gc.freeze()
