"""The PostgreSQL and Redis servers a test session runs against: found, or started for it.

A server given explicitly (CONVEYOR_TEST_POSTGRES_URL, CONVEYOR_TEST_REDIS_URL) must answer,
or its tests fail with the reason. When the default address does not answer, the session
starts a throwaway server on a free port in a temporary folder (if the binaries are
installed) and stops it at the end. Where neither works, `Backend.problem` says how to fix it.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import BufferedReader
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest
from sqlalchemy.engine import make_url

POSTGRES_URL_VARIABLE = "CONVEYOR_TEST_POSTGRES_URL"
REDIS_URL_VARIABLE = "CONVEYOR_TEST_REDIS_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

PROBE_TIMEOUT_SECONDS = 3.0
# Creating a database copies the template and waits for disk: slow on a loaded machine.
DATABASE_DDL_TIMEOUT_SECONDS = 60.0
# initdb plus a first start can take a while on a slow, busy CI machine.
SERVER_START_TIMEOUT_SECONDS = 60.0


REDIS_SUFFIX = "+redis"
DATABASES = (
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
)
ON_EVERY_BROKER = pytest.mark.parametrize(
    "backend_name",
    [*DATABASES, pytest.param("postgres+redis", id="postgres+redis", marks=pytest.mark.postgres)],
)
"""For a test module whose behaviour involves the broker: `pytestmark = ON_EVERY_BROKER`."""


@dataclass(frozen=True)
class Deployment:
    """Where a test's jobs live: the store's URL, and its Redis broker if it has one."""

    database_url: str
    redis_url: str | None = None
    redis_prefix: str | None = None

    @property
    def uses_redis(self) -> bool:
        return self.redis_url is not None


@dataclass
class Backend:
    """A server for the session: its URL, or why there is none; and how to stop it."""

    url: str | None = None
    problem: str | None = None
    stop: Callable[[], None] = field(default=lambda: None)
    restart: Callable[[], None] | None = None  # only for servers this session started
    halt: Callable[[], None] | None = None  # stop serving, keeping the data (own servers)
    resume: Callable[[], None] | None = None  # serve again after `halt`

    def require_url(self) -> str:
        if self.url is None:
            raise BackendUnavailable(self.problem or "backend unavailable")
        return self.url


class BackendUnavailable(RuntimeError):
    pass


# Discovery -----------------------------------------------------------------------------


async def find_postgres() -> Backend:
    given = os.environ.get(POSTGRES_URL_VARIABLE)
    url = given or DEFAULT_POSTGRES_URL
    failure = await postgres_failure(url)
    if failure is None:
        return Backend(url=url)
    if given:
        return Backend(problem=f"{POSTGRES_URL_VARIABLE}={given} does not answer: {failure}")
    try:
        return await asyncio.to_thread(start_postgres)
    except BackendUnavailable as error:
        return Backend(
            problem=(
                f"no PostgreSQL answers at {DEFAULT_POSTGRES_URL} ({failure}) and none could "
                f"be started ({error}). Set {POSTGRES_URL_VARIABLE} to a server the tests may "
                "create databases on, or install PostgreSQL (initdb and pg_ctl)."
            )
        )


def find_redis() -> Backend:
    given = os.environ.get(REDIS_URL_VARIABLE)
    url = given or DEFAULT_REDIS_URL
    failure = redis_failure(url)
    if failure is None:
        return Backend(url=url)
    if given:
        return Backend(problem=f"{REDIS_URL_VARIABLE}={given} does not answer: {failure}")
    try:
        return start_redis()
    except BackendUnavailable as error:
        return Backend(
            problem=(
                f"no Redis answers at {DEFAULT_REDIS_URL} ({failure}) and none could be "
                f"started ({error}). Set {REDIS_URL_VARIABLE}, or install redis-server."
            )
        )


async def postgres_failure(url: str) -> str | None:
    """None when a server at `url` accepts a query; otherwise what went wrong."""
    try:
        connection = await asyncpg.connect(url, timeout=PROBE_TIMEOUT_SECONDS)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return f"{type(error).__name__}: {error}"
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close()
    return None


def redis_failure(url: str) -> str | None:
    try:
        reply = redis_command(url, ["PING"])
    except (OSError, RedisError) as error:
        return f"{type(error).__name__}: {error}"
    return None if reply == "PONG" else f"unexpected reply to PING: {reply!r}"


# Throwaway servers ---------------------------------------------------------------------


def find_executable(name: str) -> str | None:
    """`name` on PATH, or in the newest Debian-style /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(key=lambda path: _version_key(Path(path).parent.parent.name))
    return candidates[-1] if candidates else None


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_postgres() -> Backend:
    initdb, pg_ctl = find_executable("initdb"), find_executable("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise BackendUnavailable("initdb/pg_ctl not found on PATH or in /usr/lib/postgresql")
    # Our own folder under /tmp, not pytest's: its parents are private to the current user.
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-test-postgres-"))
    data = workdir / "data"
    port = free_port()
    # Durability is pointless for a throwaway server; the socket goes to our own folder.
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {workdir} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    try:
        run_as = _unprivileged_prefix(workdir)
        # UTF-8 whatever the machine's locale: the C locale would give SQL_ASCII.
        settings = ["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        _run([*run_as, initdb, "-D", str(data), *settings])
        log = str(workdir / "postgres.log")
        wait = str(int(SERVER_START_TIMEOUT_SECONDS))
        _run(
            [*run_as, pg_ctl, "-D", str(data), "-l", log, "-o", options, "-w", "-t", wait, "start"]
        )
    except BackendUnavailable:
        shutil.rmtree(workdir, ignore_errors=True)
        raise

    def stop() -> None:
        _run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], check=False)
        shutil.rmtree(workdir, ignore_errors=True)

    def restart() -> None:
        # "fast" disconnects every client at once, as a real restart or failover does.
        command = [pg_ctl, "-D", str(data), "-l", log, "-o", options, "-m", "fast", "-w"]
        _run([*run_as, *command, "-t", wait, "restart"])

    def halt() -> None:
        _run([*run_as, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"])

    def resume() -> None:
        command = [pg_ctl, "-D", str(data), "-l", log, "-o", options, "-w", "-t", wait]
        _run([*run_as, *command, "start"])

    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    return Backend(url=url, stop=stop, restart=restart, halt=halt, resume=resume)


def _unprivileged_prefix(workdir: Path) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` user, in a folder it owns."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise BackendUnavailable("running as root and `runuser` is missing")
    try:
        shutil.chown(workdir, user="postgres")
    except (LookupError, OSError) as error:
        raise BackendUnavailable(f"running as root and no `postgres` OS user: {error}") from None
    return [runuser, "-u", "postgres", "--"]


def start_redis() -> Backend:
    # Imported here: own_redis builds on this module's helpers.
    from tests.own_redis import OwnRedis

    server = OwnRedis()
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return Backend(url=server.url, stop=server.close)


def _run(command: Sequence[str], *, check: bool = True) -> None:
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            timeout=SERVER_START_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise BackendUnavailable(f"`{Path(command[0]).name}` did not finish in time") from None
    if check and result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise BackendUnavailable(f"`{Path(command[0]).name}` failed: {output}")


# Per-test PostgreSQL databases ---------------------------------------------------------


def url_for_database(server_url: str, database: str) -> str:
    return make_url(server_url).set(database=database).render_as_string(hide_password=False)


async def create_database(server_url: str, name: str, *, template: str | None = None) -> None:
    connection = await asyncpg.connect(server_url, timeout=PROBE_TIMEOUT_SECONDS)
    try:
        suffix = f" TEMPLATE {_identifier(template)}" if template else ""
        statement = f"CREATE DATABASE {_identifier(name)}{suffix}"
        await connection.execute(statement, timeout=DATABASE_DDL_TIMEOUT_SECONDS)
    finally:
        await connection.close()


async def drop_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(server_url, timeout=PROBE_TIMEOUT_SECONDS)
    try:
        # FORCE (PostgreSQL 13+) ends connections a test left open instead of failing.
        statement = f"DROP DATABASE IF EXISTS {_identifier(name)} WITH (FORCE)"
        await connection.execute(statement, timeout=DATABASE_DDL_TIMEOUT_SECONDS)
    finally:
        await connection.close()


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# A minimal Redis client: enough to probe a server and clean up a test's keys -----------


class RedisError(Exception):
    pass


def redis_command(url: str, arguments: Sequence[str]) -> object:
    """Send one command to the Redis at `url` (redis://[[user]:password@]host[:port][/db])."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 6379)
    with socket.create_connection(address, timeout=PROBE_TIMEOUT_SECONDS) as connection:
        reader = connection.makefile("rb")
        if parts.password:
            credentials = [parts.username, parts.password] if parts.username else [parts.password]
            _exchange(connection, reader, ["AUTH", *(unquote(item) for item in credentials)])
        database = parts.path.strip("/")
        if database and database != "0":
            _exchange(connection, reader, ["SELECT", database])
        return _exchange(connection, reader, arguments)


def _exchange(
    connection: socket.socket, reader: BufferedReader, arguments: Sequence[str]
) -> object:
    encoded = [argument.encode() for argument in arguments]
    request = b"*%d\r\n" % len(encoded) + b"".join(
        b"$%d\r\n%s\r\n" % (len(argument), argument) for argument in encoded
    )
    connection.sendall(request)
    return _read_reply(reader)


def _read_reply(reader: BufferedReader) -> object:
    line = reader.readline()
    if not line:
        raise RedisError("connection closed")
    kind, body = line[:1], line[1:].rstrip(b"\r\n").decode()
    if kind == b"+":
        return body
    if kind == b"-":
        raise RedisError(body)
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        return None if size < 0 else reader.read(size + 2)[:-2].decode()
    if kind == b"*":
        return [_read_reply(reader) for _ in range(max(int(body), 0))]
    raise RedisError(f"unexpected reply {line!r}")


DELETE_BY_PREFIX = """
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1] .. '*', 'COUNT', 500)
  cursor = page[1]
  for _, key in ipairs(page[2]) do redis.call('UNLINK', key) end
until cursor == '0'
"""


def delete_keys(url: str, prefix: str) -> None:
    redis_command(url, ["EVAL", DELETE_BY_PREFIX, "0", prefix])
