"""The admin key that `conveyor up` prints: CONVEYOR_ADMIN_KEY, or one it keeps in a file.

The file is a local-development convenience, so that a restarted `conveyor up` prints the
same key: `conveyor-admin.key` next to the SQLite database (in the current folder for
PostgreSQL), holding the plaintext key, readable by its owner only. A key in the file that
no longer works as an admin key (revoked, or from another database) is replaced.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from conveyor.cli.errors import CommandFailed
from conveyor.client import Conveyor
from conveyor.core.access import Role

KEY_FILE_NAME = "conveyor-admin.key"
KEY_NAME = "conveyor up"
ENVIRONMENT_VARIABLE = "CONVEYOR_ADMIN_KEY"


@dataclass(frozen=True, slots=True)
class AdminKey:
    plaintext: str
    origin: str  # for the banner: where the key came from
    from_environment: bool = False


async def ensure_admin_key(app: Conveyor) -> AdminKey:
    """The bootstrap key if one is set; else the saved key if it still works; else a new one."""
    if app.settings.admin_key:
        return AdminKey(app.settings.admin_key, f"from {ENVIRONMENT_VARIABLE}", True)
    path = key_file_for(app.settings.database_url)
    saved = read_saved_key(path)
    if saved is not None and await is_admin_key(app, saved):
        return AdminKey(saved, f"reused from {path}")
    _, plaintext = await app.create_api_key(name=KEY_NAME, role=Role.ADMIN)
    write_private(path, plaintext)
    return AdminKey(plaintext, f"new; saved for local development in {path}")


def key_file_for(database_url: str) -> Path:
    """Beside the SQLite file, so each database keeps its own key; else the current folder."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        return Path.cwd() / KEY_FILE_NAME
    database = url.database
    if url.get_backend_name() == "sqlite" and database and not url.query.get("uri"):
        return Path(database).absolute().parent / KEY_FILE_NAME
    return Path.cwd() / KEY_FILE_NAME


def read_saved_key(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise CommandFailed(f"cannot read the saved admin key {path}: {error}") from None
    return text.strip() or None


async def is_admin_key(app: Conveyor, plaintext: str) -> bool:
    principal = await app.authenticate(plaintext)
    return principal is not None and principal.is_admin


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, replacing it whole (never half-written)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # a leftover file of that name keeps its old mode
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text + "\n")
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise CommandFailed(f"cannot save the admin key in {path}: {error}") from None
