"""The servers a comparison run uses: a private Redis, and a PostgreSQL database per system."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg

START_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of this run alone (no persistence, noeviction): its URL."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-redis-") as folder:
        command = [
            server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", folder, "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        log = (Path(folder) / "redis.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_SECONDS
            while not _answers(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start; see {log.name}")
                time.sleep(0.05)  # a starting server, polled with a deadline
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def flush_redis(url: str) -> None:
    port = int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"FLUSHALL\r\n")
        if not connection.recv(16).startswith(b"+OK"):
            raise RuntimeError("FLUSHALL failed")


@asynccontextmanager
async def postgres_database(admin_url: str, system: str) -> AsyncIterator[str]:
    """A database of one system alone, dropped afterwards: its URL."""
    name = f"conveyor_compare_{system.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
