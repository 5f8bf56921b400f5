"""JSON documents (arguments, results, progress, errors, tags, registrations) read back as
they were written, types included, on every backend and through every write path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import text

from conveyor.core.job import ErrorInfo, Job, NewJob, Progress
from conveyor.core.outcome import Completed, Failed, Retrying
from conveyor.ports import JobFilter, ProgressUpdate, Settlement, TaskInfo, WorkerInfo
from conveyor.store.sql import SqlJobStore

LEASE = 60.0

STRINGS: dict[str, str] = {
    "empty": "",
    "plain": "text",
    "accents": "héllo ✓",
    "non-BMP": "😀 𝄞 🇪🇺",
    "JSON object": '{"a":1}',
    "JSON array": "[1, 2]",
    "JSON string": '"quoted"',
    "JSON int": "14",
    "JSON float": "14.0",
    "JSON null": "null",
    "JSON true": "true",
    "exponent": "1e+16",
    "escapes": 'line\nbreak\ttab \\ backslash "quote"',
}

DOCUMENTS: dict[str, Any] = {
    "whole float": 14.0,
    "negative float": -2.5,
    "17-digit float": 0.1 + 0.2,
    "float written with an exponent": 1e16,
    "negative float written with an exponent": -1.2345678901234568e20,
    "huge float": 1e300,
    "tiny float": 5e-324,
    "int": 14,
    "zero": 0,
    "int beyond a double": 2**53 + 1,
    "int64 max": 2**63 - 1,
    "int64 min": -(2**63),
    "uint64 max": 2**64 - 1,
    "true": True,
    "false": False,
    "empty object": {},
    "empty array": [],
    "nested": {"deeper": [1, 1.0, "1", None, {"": []}], "😀": {"x": 1e16}},
    "arrays of arrays": [[], {}, [[]], [14.0, 14]],
    **{f"string: {name}": value for name, value in STRINGS.items()},
}


def typed(value: object) -> object:
    """`value` with the type of every part spelled out, so that 14 and 14.0 differ."""
    if isinstance(value, Mapping):
        return ("object", {key: typed(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return ("array", [typed(item) for item in value])
    return (type(value).__name__, value)


def typed_all(values: Mapping[str, object]) -> dict[str, object]:
    return {name: typed(value) for name, value in values.items()}


async def claim_all(store: SqlJobStore, count: int) -> list[Any]:
    claims = await store.claim(worker_id="w1", queues=(), limit=count, lease_seconds=LEASE)
    assert len(claims) == count
    return claims


async def read_back(store: SqlJobStore, job_ids: Mapping[str, str]) -> dict[str, Job]:
    """Each job as `get` returns it, after checking that the listing returns the same."""
    jobs = {name: await store.get(job_id) for name, job_id in job_ids.items()}
    listed = {job.id: job for job in (await store.list_jobs(JobFilter(), limit=500)).items}
    assert all(listed[job.id] == job for job in jobs.values())
    return jobs


# results, through settle's JSON batch -----------------------------------------------------


async def complete_in_one_batch(store: SqlJobStore) -> dict[str, str]:
    """One job per document, completed with it by a single settle; their ids by name."""
    for name in DOCUMENTS:
        await store.enqueue(NewJob(task=name))
    claims = {claim.job.task: claim for claim in await claim_all(store, len(DOCUMENTS))}
    settled = [
        Settlement(claim.job.id, claim.token, Completed(DOCUMENTS[name]))
        for name, claim in claims.items()
    ]
    assert await store.settle(settled) == {claim.job.id for claim in claims.values()}
    return {name: claim.job.id for name, claim in claims.items()}


async def test_results_read_back_with_their_exact_types(store: SqlJobStore) -> None:
    job_ids = await complete_in_one_batch(store)

    jobs = await read_back(store, job_ids)
    assert typed_all({name: job.result for name, job in jobs.items()}) == typed_all(DOCUMENTS)


async def test_each_result_settled_alone_reads_back_with_its_exact_type(
    store: SqlJobStore,
) -> None:
    results: dict[str, object] = {}
    for name, document in DOCUMENTS.items():
        await store.enqueue(NewJob(task=name))
        [claim] = await claim_all(store, 1)
        await store.settle([Settlement(claim.job.id, claim.token, Completed(document))])
        results[name] = (await store.get(claim.job.id)).result

    assert typed_all(results) == typed_all(DOCUMENTS)


async def test_a_result_of_none_reads_back_as_none(store: SqlJobStore) -> None:
    await store.enqueue(NewJob(task="t"))
    [claim] = await claim_all(store, 1)

    await store.settle([Settlement(claim.job.id, claim.token, Completed(None))])

    assert (await store.get(claim.job.id)).result is None


# arguments, through enqueue, enqueue_many and claim ---------------------------------------


async def test_arguments_from_enqueue_read_back_with_their_exact_types(
    store: SqlJobStore,
) -> None:
    returned: dict[str, object] = {}
    job_ids: dict[str, str] = {}
    for name, document in DOCUMENTS.items():
        job = (await store.enqueue(NewJob(task="t", args={"value": document}))).job
        returned[name], job_ids[name] = job.args["value"], job.id

    stored = {name: job.args["value"] for name, job in (await read_back(store, job_ids)).items()}
    assert typed_all(returned) == typed_all(DOCUMENTS)
    assert typed_all(stored) == typed_all(DOCUMENTS)


async def test_arguments_from_enqueue_many_read_back_with_their_exact_types(
    store: SqlJobStore,
) -> None:
    submitted = [NewJob(task=name, args={"value": value}) for name, value in DOCUMENTS.items()]

    results = await store.enqueue_many(submitted)

    returned = {result.job.task: result.job.args["value"] for result in results}
    stored = await read_back(store, {result.job.task: result.job.id for result in results})
    assert typed_all(returned) == typed_all(DOCUMENTS)
    assert typed_all({name: job.args["value"] for name, job in stored.items()}) == typed_all(
        DOCUMENTS
    )


async def test_claimed_jobs_carry_their_arguments_with_their_exact_types(
    store: SqlJobStore,
) -> None:
    await store.enqueue_many([NewJob(task="t", args=DOCUMENTS), NewJob(task="t", args={})])

    claims = await claim_all(store, 2)

    assert sorted((typed(dict(claim.job.args)) for claim in claims), key=repr) == sorted(
        [typed(DOCUMENTS), typed({})], key=repr
    )


# tags, progress and errors ----------------------------------------------------------------


async def test_tags_keep_their_text_and_can_be_filtered_on(store: SqlJobStore) -> None:
    tags = tuple(STRINGS.values())
    single = (await store.enqueue(NewJob(task="t", tags=tags))).job
    [batched] = await store.enqueue_many([NewJob(task="t", tags=tags)])

    assert single.tags == batched.job.tags == tags
    assert (await store.get(single.id)).tags == tags
    for tag in tags:
        page = await store.list_jobs(JobFilter(tag=tag))
        assert {job.id for job in page.items} == {single.id, batched.job.id}, tag
    assert (await store.list_jobs(JobFilter(tag='{"a": 1}'))).items == []


async def test_progress_keeps_its_percent_and_message(store: SqlJobStore) -> None:
    for name in STRINGS:
        await store.enqueue(NewJob(task=name))
    claims = {claim.job.task: claim for claim in await claim_all(store, len(STRINGS))}
    reported = {name: Progress(14.0, STRINGS[name]) for name in STRINGS}

    updates = [ProgressUpdate(c.job.id, c.token, reported[name]) for name, c in claims.items()]
    assert await store.record_progress(updates) == {c.job.id for c in claims.values()}
    stored = await read_back(store, {name: claim.job.id for name, claim in claims.items()})
    assert {name: job.progress for name, job in stored.items()} == reported

    final = {name: Progress(0.1 + 0.2, STRINGS[name][::-1]) for name in STRINGS}
    await store.settle(
        [Settlement(c.job.id, c.token, Completed(None), final[name]) for name, c in claims.items()]
    )
    settled = await read_back(store, {name: claim.job.id for name, claim in claims.items()})
    assert {name: job.progress for name, job in settled.items()} == final


async def test_error_histories_keep_their_text(store: SqlJobStore) -> None:
    for name in STRINGS:
        await store.enqueue(NewJob(task=name, max_attempts=2))
    first = {claim.job.task: claim for claim in await claim_all(store, len(STRINGS))}
    errors = {
        name: ErrorInfo(name, text, traceback=text, attempt=1) for name, text in STRINGS.items()
    }
    await store.settle(
        [Settlement(c.job.id, c.token, Retrying(errors[name], 0.0)) for name, c in first.items()]
    )
    assert (await store.promote_due(limit=len(STRINGS))).promoted == len(STRINGS)
    second = {claim.job.task: claim for claim in await claim_all(store, len(STRINGS))}
    last = {name: ErrorInfo("Final", text[::-1], attempt=2) for name, text in STRINGS.items()}
    await store.settle(
        [Settlement(c.job.id, c.token, Failed(last[name])) for name, c in second.items()]
    )

    stored = await read_back(store, {name: claim.job.id for name, claim in first.items()})
    assert {name: job.errors for name, job in stored.items()} == {
        name: (errors[name], last[name]) for name in STRINGS
    }


# registrations -----------------------------------------------------------------------------


async def test_registered_tasks_and_workers_keep_their_documents(store: SqlJobStore) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "number", "default": 14.0}}}
    await store.register_tasks(
        [TaskInfo(name="t", queue="q", args_schema=schema, options=DOCUMENTS)]
    )
    queues = tuple(value for value in STRINGS.values() if value)
    await store.register_worker(
        WorkerInfo(id="w1", host="box", pid=1, queues=queues, concurrency=1)
    )

    task = await store.get_task("t")
    [worker] = await store.list_workers()
    assert task is not None
    assert typed(dict(task.args_schema)) == typed(schema)
    assert typed(dict(task.options)) == typed(DOCUMENTS)
    assert worker.queues == queues


# SQLite: documents are stored as their JSON text -------------------------------------------

DOCUMENT_COLUMNS = {
    "conveyor_jobs": ("args", "progress", "result", "errors", "tags"),
    "conveyor_tasks": ("args_schema", "options"),
    "conveyor_workers": ("queues",),
}


async def stored_types(store: SqlJobStore) -> set[str]:
    """The SQLite storage classes of every stored document that is not NULL."""
    found: set[str] = set()
    async with store.engine.connect() as connection:
        for table, columns in DOCUMENT_COLUMNS.items():
            for column in columns:
                query = text(f"SELECT DISTINCT typeof({column}) FROM {table}")
                found.update((await connection.execute(query)).scalars())
    return found - {"null"}


async def test_sqlite_stores_every_document_as_its_json_text(sqlite_url: str) -> None:
    store = await SqlJobStore.open(sqlite_url)
    try:
        await complete_in_one_batch(store)
        await store.register_tasks([TaskInfo(name="t", queue="q")])
        await store.register_worker(WorkerInfo(id="w", host="h", pid=1, queues=(), concurrency=1))
        async with store.engine.connect() as connection:
            query = text("SELECT result FROM conveyor_jobs WHERE task = 'whole float'")
            whole_float = (await connection.execute(query)).scalar_one()

        assert await stored_types(store) == {"text"}
        assert whole_float == "14.0"
    finally:
        await store.close()
