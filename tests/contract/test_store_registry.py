"""Tasks and workers as workers register them, read by processes without user code."""

from __future__ import annotations

from conveyor.ports import TaskInfo, WorkerInfo
from conveyor.store.sql import SqlJobStore

SCHEMA = {"type": "object", "properties": {"numbers": {"type": "array"}}}


def worker(worker_id: str, **changes: object) -> WorkerInfo:
    values: dict[str, object] = {
        "id": worker_id,
        "host": "box",
        "pid": 42,
        "queues": ("default", "math"),
        "concurrency": 8,
    }
    values.update(changes)
    return WorkerInfo(**values)  # type: ignore[arg-type]


async def test_registered_tasks_are_listed_by_name(store: SqlJobStore) -> None:
    square = TaskInfo(
        name="math.square",
        queue="math",
        priority=3,
        max_attempts=4,
        timeout=30.0,
        args_schema=SCHEMA,
        options={"retry_base_seconds": 1.5},
    )
    report = TaskInfo(name="reports.csv", queue="default")

    await store.register_tasks([square, report])

    assert await store.list_tasks() == [square, report]
    assert await store.get_task("math.square") == square
    assert await store.get_task("unknown") is None


async def test_registering_a_task_again_replaces_its_definition(store: SqlJobStore) -> None:
    await store.register_tasks([TaskInfo(name="t", queue="old", args_schema=SCHEMA)])
    newer = TaskInfo(name="t", queue="new", priority=9)

    await store.register_tasks([newer, TaskInfo(name="u", queue="default")])

    assert await store.get_task("t") == newer
    assert [task.name for task in await store.list_tasks()] == ["t", "u"]


async def test_registering_no_tasks_changes_nothing(store: SqlJobStore) -> None:
    await store.register_tasks([])

    assert await store.list_tasks() == []


async def test_a_registered_worker_is_listed_with_its_heartbeat(store: SqlJobStore) -> None:
    await store.register_worker(worker("box:42"))

    [listed] = await store.list_workers()

    assert (listed.id, listed.host, listed.pid) == ("box:42", "box", 42)
    assert (listed.queues, listed.concurrency, listed.running_jobs) == (("default", "math"), 8, 0)
    assert listed.alive
    assert listed.started_at is not None
    assert listed.last_heartbeat_at is not None


async def test_a_heartbeat_records_the_running_jobs_and_the_time(store: SqlJobStore) -> None:
    await store.register_worker(worker("box:42"))
    [before] = await store.list_workers()

    await store.worker_heartbeat(worker_id="box:42", running_jobs=5)

    [after] = await store.list_workers()
    assert after.running_jobs == 5
    assert after.last_heartbeat_at is not None
    assert before.last_heartbeat_at is not None
    assert after.last_heartbeat_at >= before.last_heartbeat_at


async def test_silent_workers_are_marked_dead_and_hidden(store: SqlJobStore) -> None:
    await store.register_worker(worker("box:1"))
    await store.register_worker(worker("box:2"))

    assert await store.mark_dead_workers(silent_for_seconds=3600) == 0
    assert await store.mark_dead_workers(silent_for_seconds=-60) == 2
    assert await store.mark_dead_workers(silent_for_seconds=-60) == 0

    assert await store.list_workers() == []
    assert [w.alive for w in await store.list_workers(include_dead=True)] == [False, False]


async def test_a_heartbeat_brings_a_worker_marked_dead_back(store: SqlJobStore) -> None:
    await store.register_worker(worker("box:1"))
    await store.mark_dead_workers(silent_for_seconds=-60)

    await store.worker_heartbeat(worker_id="box:1", running_jobs=0)

    assert [w.id for w in await store.list_workers()] == ["box:1"]


async def test_a_deregistered_worker_is_gone(store: SqlJobStore) -> None:
    await store.register_worker(worker("box:1"))
    await store.register_worker(worker("box:2"))

    await store.deregister_worker(worker_id="box:1")

    assert [w.id for w in await store.list_workers(include_dead=True)] == ["box:2"]


async def test_a_restarted_worker_registers_again_under_its_id(store: SqlJobStore) -> None:
    await store.register_worker(worker("box:1", concurrency=2))
    await store.mark_dead_workers(silent_for_seconds=-60)

    await store.register_worker(worker("box:1", concurrency=16))

    [listed] = await store.list_workers()
    assert (listed.alive, listed.concurrency) == (True, 16)
