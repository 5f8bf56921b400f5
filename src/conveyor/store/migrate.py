"""Schema migrations, run in code: the Alembic scripts ship inside the package.

`conveyor db upgrade` calls `upgrade`; SQLite stores migrate themselves on open, and a
PostgreSQL store refuses to open on a schema that is not at head.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor.core.errors import ConfigError
from conveyor.store.engine import create_engine, describe_database, is_unavailable, unavailable

SCRIPTS = Path(__file__).with_name("migrations")

# Two `conveyor db upgrade` runs at once would both try to create the tables; the second
# waits on this lock and then finds the schema at head. (An arbitrary constant: "cnvymig".)
_MIGRATION_LOCK_KEY = 0x636E76796D6967


def _config() -> Config:
    config = Config()
    # ConfigParser interpolation treats "%" specially; a path may contain one.
    config.set_main_option("script_location", str(SCRIPTS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """The revision this version of Conveyor needs."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration scripts found in {SCRIPTS}")
    return head


async def upgrade(url: str) -> None:
    """Bring the database at `url` to the head revision (a no-op when it is there)."""
    engine = create_engine(url)
    try:
        await upgrade_engine(engine)
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The database's revision, or None when it was never migrated."""
    engine = create_engine(url)
    try:
        return await revision_of(engine)
    finally:
        await engine.dispose()


async def upgrade_engine(engine: AsyncEngine) -> None:
    try:
        # One transaction: SQLite's BEGIN IMMEDIATE (or the PostgreSQL lock below) makes a
        # second process wait, then read the version the first one committed.
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_on)
    except Exception as error:
        if is_unavailable(error):
            raise unavailable(error, engine.url) from error
        raise


def _upgrade_on(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    config = _config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def revision_of(engine: AsyncEngine) -> str | None:
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_revision_on)
    except Exception as error:
        if is_unavailable(error):
            raise unavailable(error, engine.url) from error
        raise


def _revision_on(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def prepare_schema(engine: AsyncEngine) -> None:
    """Migrate a SQLite store on first use; require PostgreSQL to be migrated already."""
    head = head_revision()
    current = await revision_of(engine)
    if current == head:
        return
    if engine.dialect.name == "sqlite":
        await upgrade_engine(engine)
        return
    found = "not migrated" if current is None else f"at revision {current}"
    raise ConfigError(
        f"the job store schema ({describe_database(engine.url)}) is {found}, but this "
        f"version of Conveyor needs revision {head}: run `conveyor db upgrade`"
    )
