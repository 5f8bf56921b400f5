"""AlikeJobs: the jobs of one enqueue_many call, each built when first read, in order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from conveyor.core.job import NewJob
from conveyor.ports import AlikeJobs


class Builder:
    """Builds a job per mapping and remembers which it built, refusing {"bad": True}."""

    def __init__(self) -> None:
        self.built: list[int] = []

    def __call__(self, args: Mapping[str, Any]) -> NewJob:
        if args.get("bad"):
            raise ValueError(f"job {args['index']} is refused")
        self.built.append(args["index"])
        return NewJob(task="t", args=dict(args))


def jobs_of(count: int, builder: Builder) -> AlikeJobs:
    return AlikeJobs(builder, [{"index": index} for index in range(count)], keyed=False)


def test_its_length_builds_nothing_and_reading_builds_up_to_what_is_read() -> None:
    builder = Builder()
    jobs = jobs_of(10, builder)

    assert len(jobs) == 10
    assert builder.built == []
    assert jobs[2].args == {"index": 2}
    assert builder.built == [0, 1, 2]
    assert [job.args["index"] for job in jobs[3:6]] == [3, 4, 5]
    assert builder.built == [0, 1, 2, 3, 4, 5]
    assert jobs[0] is jobs[0]  # built once
    assert builder.built == [0, 1, 2, 3, 4, 5]


def test_it_reads_as_a_list_would() -> None:
    builder = Builder()
    jobs = jobs_of(5, builder)

    assert [job.args["index"] for job in jobs[-3:-1]] == [2, 3]  # before the last is built
    assert builder.built == [0, 1, 2, 3]
    assert jobs[-1].args == {"index": 4}
    assert [job.args["index"] for job in jobs[8:]] == []
    assert [job.args["index"] for job in jobs[::-2]] == [4, 2, 0]
    assert [job.args["index"] for job in jobs] == [0, 1, 2, 3, 4]
    assert builder.built == [0, 1, 2, 3, 4]
    with pytest.raises(IndexError):
        jobs[5]
    with pytest.raises(IndexError):
        jobs[-6]


def test_a_job_that_fails_to_build_raises_when_read() -> None:
    builder = Builder()
    jobs = AlikeJobs(builder, [{"index": 0}, {"index": 1, "bad": True}], keyed=True)

    assert jobs.keyed
    assert jobs[0].args == {"index": 0}
    with pytest.raises(ValueError, match="job 1 is refused"):
        list(jobs)
