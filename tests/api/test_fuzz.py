"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis).

Every operation the app declares is fuzzed on SQLite and on PostgreSQL, in two passes:

- positive: requests that fit the schema. No 5xx, and every answer matches the schema:
  status code, content type, headers and body (an event stream's events included);
- negative: requests that break the schema (operations that take any input). Still no 5xx,
  and the refusal is a declared status with a declared body.

`positive_data_acceptance` is deliberately not checked: the API refuses some schema-valid
input by design (a queue name with whitespace, a cursor it did not issue, a run_at out of
range), with a 422 problem.

The app runs in-process with its lifespan (schemathesis's ASGI transport) on a database
seeded with jobs in every state, API keys, a worker and a paused queue. Path parameters are
drawn from those ids as well as generated, so that the requests reach real jobs and keys,
not only 404s; submissions are also aimed at a registered task, so that 201s are checked
too. Every request carries the admin key. Hypothesis is derandomized, without an example
database and with a bounded number of examples, so CI sends the same requests every run.

The Hypothesis tests are built here from `operation.as_strategy()` rather than with
schemathesis's pytest integration: `schema.parametrize()` needs the schema at import time
(the app here needs the test's database), and `schemathesis.pytest.from_fixture()` fails on
pytest 9 (it sets `Function._nodeid`, which pytest 9 no longer has).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conveyor.api import create_app
from conveyor.config import load_settings
from conveyor.core.access import Role
from conveyor.core.job import ErrorInfo, JobState, Progress
from conveyor.core.outcome import Completed, Failed, Retrying
from conveyor.ports import ProgressUpdate, Settlement, WorkerInfo
from tests.api.harness import ADMIN_KEY, Api, Headers, api_settings, running_api

MAX_EXAMPLES = 30  # per operation and pass
# A request that hangs fails its test rather than stalling CI (none should take long).
REQUEST_TIMEOUT_SECONDS = 20
EVENTS_PATH = "/api/v1/jobs/{job_id}/events"

AnyCase = Case[Any]


# What the app declares --------------------------------------------------------------------


def _operations() -> list[tuple[str, str, bool]]:
    """(method, path, whether it takes any input) for each operation of the app's schema.

    Read from the app itself, so that a new endpoint is fuzzed without touching this file.
    """
    app = create_app(load_settings(database_url="sqlite://", admin_key="unused"))
    return [
        (method.upper(), path, bool(operation.get("parameters") or operation.get("requestBody")))
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
    ]


OPERATIONS = [
    pytest.param(method, path, takes_input, id=f"{method} {path}")
    for method, path, takes_input in _operations()
]


# The database -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    """A store with jobs in every state, keys and a paused queue: real ids to aim at."""

    database_url: str
    jobs: dict[JobState, list[str]] = field(default_factory=dict)
    key_ids: list[str] = field(default_factory=list)  # the first one is revoked
    queues: tuple[str, ...] = ("math", "echo", "default")  # echo is paused

    def job_ids(self, *states: JobState) -> list[str]:
        return [job_id for state in states or JobState for job_id in self.jobs.get(state, [])]


SQUARE_SUM = {"task": "math.square_sum", "args": {"numbers": [1, 2.5]}}


@pytest.fixture
async def seeded(database_url: str) -> Seeded:
    seeded = Seeded(database_url)
    async with running_api(api_settings(database_url)) as api:
        await _seed(api, seeded)
    return seeded


async def _seed(api: Api, seeded: Seeded) -> None:
    store = await api.store()

    async def submit(
        state: JobState, body: Mapping[str, Any], headers: Headers | None = None
    ) -> str:
        job_id = str((await api.submit(headers or api.admin, body))["id"])
        seeded.jobs.setdefault(state, []).append(job_id)
        return job_id

    await submit(JobState.QUEUED, {**SQUARE_SUM, "tags": ["a", "b"], "priority": 5})
    await submit(JobState.QUEUED, {"task": "demo.echo", "args": {"payload": {"x": [1, None]}}})
    await submit(JobState.QUEUED, SQUARE_SUM, await api.key(Role.WRITE, tenant="other"))
    await submit(JobState.SCHEDULED, {**SQUARE_SUM, "delay": 3600, "idempotency_key": "later"})
    running = await submit(JobState.RUNNING, SQUARE_SUM)
    progressing = await submit(JobState.RUNNING, {"task": "demo.echo"})
    completed = await submit(JobState.COMPLETED, SQUARE_SUM)
    failed = await submit(JobState.FAILED, SQUARE_SUM)
    retryable = await submit(JobState.RETRYABLE, SQUARE_SUM)
    cancelled = await submit(JobState.CANCELLED, SQUARE_SUM)

    # What a worker would do, through the store: no worker runs, so nothing moves on.
    await store.register_worker(
        WorkerInfo(id="fuzz-worker", host="fuzz", pid=1, queues=("math",), concurrency=2)
    )
    claims = await store.claim_ids(
        worker_id="fuzz-worker",
        job_ids=[running, progressing, completed, failed, retryable],
        lease_seconds=3600,
    )
    token = {claim.job.id: claim.token for claim in claims}
    await store.record_progress(
        [ProgressUpdate(progressing, token[progressing], Progress(40.0, "copying"))]
    )
    error = ErrorInfo(type="ValueError", message="bad input", attempt=1)
    await store.settle(
        [
            Settlement(completed, token[completed], Completed({"sum": 7.25})),
            Settlement(failed, token[failed], Failed(error)),
            Settlement(retryable, token[retryable], Retrying(error, 3600)),
        ]
    )
    await api.conveyor.cancel(cancelled, tenant=None)

    for role in Role:
        key, _ = await api.conveyor.create_api_key(name=f"fuzz {role}", tenant="t", role=role)
        seeded.key_ids.append(key.id)
    await api.conveyor.revoke_api_key(seeded.key_ids[0])
    await api.conveyor.pause_queue("echo")


@pytest.fixture
def served(seeded: Seeded) -> Iterator[schemathesis.BaseSchema]:
    """The schema, loaded from the app on the seeded store with the app's lifespan running."""
    config = schemathesis.Config.from_dict(
        {
            # Every request is an admin's: no generated credentials, the key as a header.
            "headers": {"Authorization": f"Bearer {ADMIN_KEY}"},
            "generation": {"with-security-parameters": False},
            "request-timeout": REQUEST_TIMEOUT_SECONDS,
            "operations": [
                # A job that is not terminal is followed until the client goes away: its
                # first event is read and checked, then the client leaves (as a closed
                # browser tab does). A terminal job's stream ends after that event anyway.
                {"include-path": EVENTS_PATH, "max-stream-events": 1},
            ],
        }
    )
    app = create_app(api_settings(seeded.database_url))
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    finally:
        # The transport keeps a lifespan running for the rest of the process: end it here.
        asgi.shutdown_lifespans()


# What is sent -----------------------------------------------------------------------------


def cases(
    schema: schemathesis.BaseSchema, seeded: Seeded, method: str, path: str, mode: GenerationMode
) -> st.SearchStrategy[AnyCase]:
    operation = schema[path][method]
    generated = operation.as_strategy(mode)
    variants = [generated]
    known = _known_path_parameters(seeded, method, path)
    # A negative case must break something: with a known path, only the rest can be broken.
    if known and (mode is GenerationMode.POSITIVE or _takes_more_than_a_path(operation)):
        variants.append(
            st.sampled_from(known).flatmap(
                lambda parameters: operation.as_strategy(mode, path_parameters=parameters)
            )
        )
    if mode is GenerationMode.POSITIVE and (method, path) in SUBMISSIONS:
        variants.append(_aimed_at_a_registered_task(generated))
    return st.one_of(variants)


def _known_path_parameters(seeded: Seeded, method: str, path: str) -> list[dict[str, str]]:
    if "{job_id}" in path:
        if method == "GET" and path.endswith("{job_id}"):
            # ?wait= long-polls until the job is terminal: only jobs that stay terminal
            # whatever the other requests do (a completed job cannot be retried), so that no
            # example waits out its `wait`.
            return [{"job_id": job_id} for job_id in seeded.job_ids(JobState.COMPLETED)]
        return [{"job_id": job_id} for job_id in seeded.job_ids()]
    if "{key_id}" in path:
        return [{"key_id": key_id} for key_id in seeded.key_ids]
    if "{name}" in path:
        return [{"name": name} for name in seeded.queues]
    return []


def _takes_more_than_a_path(operation: Any) -> bool:
    return bool(operation.query or operation.headers or operation.cookies or operation.body)


SUBMISSIONS = {("POST", "/api/v1/jobs"), ("POST", "/api/v1/jobs/batch")}
OPTIONS = ("queue", "priority", "delay", "run_at", "max_attempts", "timeout", "tags")


def _aimed_at_a_registered_task(
    generated: st.SearchStrategy[AnyCase],
) -> st.SearchStrategy[AnyCase]:
    """Generated submissions for demo.echo (its payload: the generated arguments).

    Generated task names are never registered, so without this every submission would be an
    unknown-task 422, and a created job would never be checked against the schema. Each
    option is kept or dropped, so that some submissions are accepted (generated option
    values are often refused).
    """

    def aim(submission: Any, kept: frozenset[str]) -> Any:
        if not isinstance(submission, dict):
            return submission
        aimed = {name: value for name, value in submission.items() if name in kept}
        return {**aimed, "task": "demo.echo", "args": {"payload": submission.get("args", {})}}

    def aimed(case: AnyCase, kept: frozenset[str]) -> AnyCase:
        body = case.body
        if isinstance(body, dict) and isinstance(jobs := body.get("jobs"), list):  # a batch
            case.body = {**body, "jobs": [aim(job, kept) for job in jobs]}
        else:
            case.body = aim(body, kept)
        return case

    return st.builds(aimed, generated, st.frozensets(st.sampled_from(OPTIONS)))


# What is checked --------------------------------------------------------------------------

# An event's data is a JSON string to the schema; docs/api.md says what it holds.
EVENT_DATA = {"state": "JobOut", "progress": "ProgressOut", "error": None}
ERROR_EVENT = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}


def events_carry_what_the_documentation_says(
    ctx: CheckContext, response: Response, case: AnyCase
) -> bool | None:
    """Each event of a stream: a job for `state`, progress for `progress`, a detail for `error`."""
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.startswith("text/event-stream"):
        return None
    events = [event for block in response.text.split("\n\n") if (event := _event(block))]
    assert events, "a stream without an event (the first one shows the job as it is)"
    components = case.operation.schema.raw_schema
    for name, data in events:
        assert name in EVENT_DATA, f"unexpected event {name!r}"
        model = EVENT_DATA[name]
        schema = ERROR_EVENT if model is None else {"$ref": f"#/components/schemas/{model}"}
        validator = Draft202012Validator({**components, **schema})
        problems = [error.message for error in validator.iter_errors(orjson.loads(data))]
        assert not problems, f"the data of a {name} event does not match its schema: {problems}"
    return True


def _event(block: str) -> tuple[str, str] | None:
    """(name, data) of one Server-Sent Event; None for a comment (a ping)."""
    fields: dict[str, str] = {}
    for line in block.splitlines():
        if not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return (fields.get("event", "message"), fields["data"]) if "data" in fields else None


CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    events_carry_what_the_documentation_says,
]


def fuzz(strategy: st.SearchStrategy[AnyCase], mode: GenerationMode) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[
            # Time-based, so it could pass on one machine and fail on a slower one.
            HealthCheck.too_slow,
            # Schemathesis drops the negative cases that turn valid once serialized (most
            # mutations of a path parameter do): fewer tries, not a problem of the test.
            *([HealthCheck.filter_too_much] if mode is GenerationMode.NEGATIVE else []),
        ],
    )
    @given(case=strategy)
    def run(case: AnyCase) -> None:
        case.call_and_validate(checks=CHECKS)

    try:
        run()
    except Exception as error:
        error.add_note(f"(in the {mode.value} pass)")
        raise


# The test ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "takes_input"), OPERATIONS)
def test_fuzzed_requests_get_no_server_error_and_answers_that_match_the_schema(
    served: schemathesis.BaseSchema, seeded: Seeded, method: str, path: str, takes_input: bool
) -> None:
    fuzz(cases(served, seeded, method, path, GenerationMode.POSITIVE), GenerationMode.POSITIVE)
    if takes_input:  # without parameters or a body, nothing can break the schema
        fuzz(cases(served, seeded, method, path, GenerationMode.NEGATIVE), GenerationMode.NEGATIVE)
