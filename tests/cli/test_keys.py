"""`conveyor keys create|list|revoke`: keys are shown once, listed without secrets, revoked."""

from __future__ import annotations

import json

import pytest

from conveyor.core.access import Principal, Role, digest_of
from tests.cli.conftest import Cli, StoreHelper


def create_key(cli: Cli, *arguments: str) -> str:
    result = cli("keys", "create", *arguments)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def authenticate(store_helper: StoreHelper, plaintext: str) -> Principal | None:
    return store_helper.call(lambda app: app.authenticate(plaintext))


def test_create_prints_only_the_key_on_stdout_and_the_key_works(
    backend_cli: Cli, backend_store_helper: StoreHelper
) -> None:
    result = backend_cli("keys", "create", "--name", "billing", "--tenant", "acme",
                         "--role", "read")  # fmt: skip

    assert result.exit_code == 0, result.output
    plaintext = result.stdout.strip()
    assert len(result.stdout.splitlines()) == 1
    assert "cannot be shown again" in result.stderr
    principal = authenticate(backend_store_helper, plaintext)
    assert principal is not None
    assert (principal.tenant, principal.role) == ("acme", Role.READ)


def test_create_defaults_to_a_write_key_of_the_default_tenant(
    cli: Cli, store_helper: StoreHelper
) -> None:
    plaintext = create_key(cli, "--name", "ci")

    principal = authenticate(store_helper, plaintext)

    assert principal is not None
    assert (principal.tenant, principal.role) == ("default", Role.WRITE)


def test_list_shows_each_key_but_never_its_secret_or_digest(backend_cli: Cli) -> None:
    admin = create_key(backend_cli, "--name", "ops", "--role", "admin")
    reader = create_key(backend_cli, "--name", "dashboard", "--tenant", "acme", "--role", "read")

    result = backend_cli("keys", "list")

    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "ID",
        "NAME",
        "TENANT",
        "ROLE",
        "CREATED",
        "(UTC)",
        "REVOKED",
        "(UTC)",
    ]
    listed = {tuple(row.split()[1:4]) for row in rows}
    assert listed == {("ops", "default", "admin"), ("dashboard", "acme", "read")}
    for plaintext in (admin, reader):
        assert plaintext not in result.stdout
        assert digest_of(plaintext) not in result.stdout


def test_list_json_has_ids_and_no_digests(backend_cli: Cli) -> None:
    plaintext = create_key(backend_cli, "--name", "ops")

    result = backend_cli("keys", "list", "--json")

    assert result.exit_code == 0, result.output
    [key] = json.loads(result.stdout)
    assert plaintext.split("_")[1] == key["id"]
    assert set(key) == {"id", "name", "tenant", "role", "created_at", "revoked_at"}
    assert key["created_at"] is not None
    assert key["revoked_at"] is None


def test_list_says_so_when_there_are_no_keys(cli: Cli) -> None:
    result = cli("keys", "list")

    assert result.exit_code == 0
    assert result.stdout.strip() == "no API keys"


def test_a_revoked_key_no_longer_authenticates(
    backend_cli: Cli, backend_store_helper: StoreHelper
) -> None:
    plaintext = create_key(backend_cli, "--name", "leaked")
    key_id = plaintext.split("_")[1]

    result = backend_cli("keys", "revoke", key_id)

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"revoked API key {key_id} (leaked)"
    assert authenticate(backend_store_helper, plaintext) is None
    [listed] = json.loads(backend_cli("keys", "list", "--json").stdout)
    assert listed["revoked_at"] is not None


def test_revoking_an_unknown_key_fails_with_exit_1(backend_cli: Cli) -> None:
    result = backend_cli("keys", "revoke", "0123456789ab")

    assert result.exit_code == 1
    assert result.stderr.strip() == "error: no API key with id '0123456789ab'"


def test_an_unknown_role_is_a_usage_error(cli: Cli) -> None:
    result = cli("keys", "create", "--name", "ci", "--role", "owner")

    assert result.exit_code == 2
    assert "--role" in result.stderr
    assert "'owner'" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["--name", "ci", "--tenant", "two words"], "tenant: "),
        (["--name", " "], "name: must be 1 to 200 characters"),
        (["--name", "x" * 201], "name: must be 1 to 200 characters"),
    ],
)
def test_an_invalid_key_says_which_field_is_wrong(
    backend_cli: Cli, arguments: list[str], problem: str
) -> None:
    result = backend_cli("keys", "create", *arguments)

    assert result.exit_code == 2
    first, second = result.stderr.splitlines()
    assert first == "error: invalid API key:"
    assert second.strip().startswith(problem)
    assert backend_cli("keys", "list").stdout.strip() == "no API keys"


def test_create_needs_a_name(cli: Cli) -> None:
    result = cli("keys", "create")

    assert result.exit_code == 2
    assert "--name" in result.stderr
