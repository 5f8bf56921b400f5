"""`conveyor queues list|pause|resume`: every tenant's queues, and claiming from them."""

from __future__ import annotations

import json

import pytest

from conveyor.cli.queues import describe_age
from tests.cli.conftest import Cli, StoreHelper


def listed_queues(cli: Cli) -> dict[str, dict[str, object]]:
    result = cli("queues", "list", "--json")
    assert result.exit_code == 0, result.output
    return {queue["name"]: queue for queue in json.loads(result.stdout)}


def test_list_shows_counts_by_state_for_every_tenant(
    backend_cli: Cli, backend_store_helper: StoreHelper
) -> None:
    backend_store_helper.enqueue("cli.add", {"a": 1, "b": 2})
    backend_store_helper.enqueue("cli.add", {"a": 1, "b": 2}, tenant="acme")
    failed = backend_store_helper.enqueue("cli.fail", {"message": "x"})
    backend_store_helper.call(lambda app: app.cancel(failed.id))

    queues = listed_queues(backend_cli)

    assert queues["arithmetic"]["counts"] == {
        "scheduled": 0, "queued": 2, "running": 0, "retryable": 0,
        "completed": 0, "failed": 0, "cancelled": 0,
    }  # fmt: skip
    assert queues["arithmetic"]["paused"] is False
    assert isinstance(queues["arithmetic"]["oldest_queued_age_seconds"], float)
    assert queues["default"]["oldest_queued_age_seconds"] is None
    assert queues["default"]["counts"]["cancelled"] == 1  # type: ignore[index]


def test_list_prints_a_table_with_one_row_per_queue(cli: Cli, store_helper: StoreHelper) -> None:
    store_helper.enqueue("cli.add", {"a": 1, "b": 2})

    result = cli("queues", "list")

    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    [row] = [row for row in rows if row.startswith("arithmetic ")]
    assert header.split() == [
        "QUEUE", "PAUSED", "SCHEDULED", "QUEUED", "RUNNING", "RETRYABLE",
        "COMPLETED", "FAILED", "CANCELLED", "OLDEST", "QUEUED",
    ]  # fmt: skip
    assert row.split()[:9] == ["arithmetic", "no", "0", "1", "0", "0", "0", "0", "0"]
    assert row.split()[9].endswith("s")


def test_list_says_so_when_there_are_no_queues(cli: Cli) -> None:
    result = cli("queues", "list")

    assert result.exit_code == 0
    assert result.stdout.strip() == "no queues"


def test_pause_and_resume_show_in_the_list(
    backend_cli: Cli, backend_store_helper: StoreHelper
) -> None:
    backend_store_helper.enqueue("cli.add", {"a": 1, "b": 2})

    paused = backend_cli("queues", "pause", "arithmetic")

    assert paused.exit_code == 0, paused.output
    assert paused.stdout.startswith("paused queue arithmetic")
    assert listed_queues(backend_cli)["arithmetic"]["paused"] is True

    resumed = backend_cli("queues", "resume", "arithmetic")

    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.strip() == "resumed queue arithmetic"
    assert listed_queues(backend_cli)["arithmetic"]["paused"] is False


def test_a_paused_queue_is_not_claimed_from(
    backend_cli: Cli, backend_store_helper: StoreHelper
) -> None:
    job = backend_store_helper.enqueue("cli.add", {"a": 1, "b": 2})
    backend_cli("queues", "pause", "arithmetic")

    async def claim_one(app: object) -> list[str]:
        store = await app.store()  # type: ignore[attr-defined]
        claims = await store.claim(worker_id="cli-test", queues=[], limit=1, lease_seconds=30)
        return [claim.job.id for claim in claims]

    assert backend_store_helper.call(claim_one) == []
    backend_cli("queues", "resume", "arithmetic")
    assert backend_store_helper.call(claim_one) == [job.id]


def test_a_queue_can_be_paused_before_it_has_jobs(backend_cli: Cli) -> None:
    result = backend_cli("queues", "pause", "reports")

    assert result.exit_code == 0, result.output
    assert listed_queues(backend_cli)["reports"]["paused"] is True


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_an_invalid_queue_name_is_a_usage_error(backend_cli: Cli, command: str) -> None:
    result = backend_cli("queues", command, "two words")

    assert result.exit_code == 2
    first, second = result.stderr.splitlines()
    assert first == "error: invalid queue name:"
    assert second.strip().startswith("queue: ")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (0.4, "0s"), (59.9, "59s"), (61, "1m 01s"), (3599, "59m 59s"),
     (3600, "1h 00m"), (90061, "25h 01m")],
)  # fmt: skip
def test_ages_are_short_and_readable(seconds: float | None, shown: str) -> None:
    assert describe_age(seconds) == shown
