"""Job ids sort by creation, cursors round-trip, and foreign cursors are refused."""

from __future__ import annotations

import os
import uuid

import pytest

from conveyor.core.errors import InvalidSubmission
from conveyor.store.ids import new_job_id, new_job_ids, new_lease_token
from conveyor.store.rows import decode_cursor, encode_cursor


def test_job_ids_are_version_7_uuids_in_creation_order() -> None:
    ids = [new_job_id() for _ in range(10_000)]

    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(job_id).version for job_id in ids} == {7}


def test_ids_made_in_a_batch_keep_the_order_of_those_made_one_at_a_time() -> None:
    # More ids than the 12-bit counter holds in one millisecond: the batch runs on into the
    # next millisecond instead of wrapping around.
    ids = [new_job_id(), *new_job_ids(5000), new_job_id(), *new_job_ids(1), *new_job_ids(0)]

    assert len(ids) == 5003
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(job_id).version for job_id in ids} == {7}
    assert {uuid.UUID(job_id).variant for job_id in ids} == {uuid.RFC_4122}
    assert all(str(uuid.UUID(job_id)) == job_id for job_id in ids)  # canonical form


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_makes_other_ids_than_its_parent() -> None:
    new_job_id()  # the parent holds random bits its child would otherwise inherit
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(reading)
        os.write(writing, "\n".join(new_job_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(writing)
    parents = {new_job_id() for _ in range(100)}
    with os.fdopen(reading) as stream:
        childs = set(stream.read().split())
    os.waitpid(child, 0)

    assert len(childs) == 100
    # The last 48 bits are random: shared random bits would repeat there whatever the clock.
    assert not {job_id[24:] for job_id in parents} & {job_id[24:] for job_id in childs}


def test_lease_tokens_are_unguessable_and_distinct() -> None:
    tokens = {new_lease_token() for _ in range(1000)}

    assert len(tokens) == 1000
    assert all(len(token) == 32 for token in tokens)


def test_a_cursor_leads_back_to_the_job_it_was_made_from() -> None:
    job_id = new_job_id()

    assert decode_cursor(encode_cursor(job_id)) == job_id


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!",
        encode_cursor("short"),
        "x" * 80,
        encode_cursor("\x00" * 36),  # the right length, but text PostgreSQL refuses
        encode_cursor("a" * 36),
        encode_cursor("018F0000-0000-7000-8000-000000000000"),  # not as this server writes ids
    ],
)
def test_a_cursor_that_was_never_issued_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidSubmission, match="cursor"):
        decode_cursor(cursor)
