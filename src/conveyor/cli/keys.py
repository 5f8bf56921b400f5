"""`conveyor keys create|list|revoke`: the API keys the HTTP API accepts.

Only a key's SHA-256 digest is stored, so `create` is the one moment its plaintext exists:
it goes to stdout alone (`KEY=$(conveyor keys create ...)` works) and the reminder that it
cannot be shown again goes to stderr. Nothing ever prints a digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.errors import invalid_input
from conveyor.cli.facade import application, run
from conveyor.cli.output import console, print_json, short_instant
from conveyor.core.access import ApiKey, Role
from conveyor.core.job import DEFAULT_TENANT, JSONValue

keys_app = typer.Typer(
    name="keys", help="Create, list and revoke API keys for the HTTP API.", no_args_is_help=True
)


@keys_app.command("create")
def create(
    ctx: typer.Context,
    *,
    name: Annotated[str, typer.Option(help="What the key is for, to recognise it in `keys list`.")],
    tenant: Annotated[
        str, typer.Option(help="The tenant whose jobs the key sees and submits.")
    ] = DEFAULT_TENANT,
    role: Annotated[
        Role,
        typer.Option(
            case_sensitive=False,
            help="read: see jobs; write: also submit, cancel, retry, delete; "
            "admin: everything, every tenant, queues and keys.",
        ),
    ] = Role.WRITE,
) -> None:
    """Create a key and print it once: only its digest is stored."""
    with invalid_input("API key"):
        key, plaintext = run(
            application(ctx),
            lambda app: app.create_api_key(name=name, tenant=tenant, role=role),
        )
    typer.echo(plaintext)
    typer.echo(
        f"created API key {key.id} (role {key.role.value}, tenant {key.tenant}); copy it now: "
        "it cannot be shown again",
        err=True,
    )


@keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every key, revoked ones too; never a secret or a digest."""
    keys = run(application(ctx), lambda app: app.list_api_keys())
    if as_json:
        print_json([key_to_json(key) for key in keys])
    elif not keys:
        typer.echo("no API keys")
    else:
        console().print(key_table(keys))


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (keys list).")],
) -> None:
    """Revoke a key: requests that present it are refused from now on."""
    key = run(application(ctx), lambda app: app.revoke_api_key(key_id))
    typer.echo(f"revoked API key {key.id} ({key.name})")


def key_to_json(key: ApiKey) -> dict[str, JSONValue]:
    return {
        "id": key.id,
        "name": key.name,
        "tenant": key.tenant,
        "role": key.role.value,
        "created_at": None if key.created_at is None else key.created_at.isoformat(),
        "revoked_at": None if key.revoked_at is None else key.revoked_at.isoformat(),
    }


def key_table(keys: Sequence[ApiKey]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("ID", no_wrap=True)
    for header in ("NAME", "TENANT", "ROLE", "CREATED (UTC)", "REVOKED (UTC)"):
        table.add_column(header, overflow="fold")
    for key in keys:
        table.add_row(
            Text(key.id),
            Text(key.name),  # user text: never read as Rich markup
            Text(key.tenant),
            key.role.value,
            short_instant(key.created_at),
            short_instant(key.revoked_at),
        )
    return table
