"""A redis-server one test owns, to kill and start again: see OwnRedis."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.backends import (
    SERVER_START_TIMEOUT_SECONDS,
    BackendUnavailable,
    find_executable,
    free_port,
    redis_failure,
)


class OwnRedis:
    """A redis-server one test owns, without persistence, that it can kill and start again
    on the same port: what clients meet when a production Redis crashes or restarts empty.

    `start_redis` uses one for a session's server; fault tests own one to disturb it.
    Use it as a context manager, or call `close()`: the server is stopped either way.
    """

    def __init__(self) -> None:
        server = find_executable("redis-server")
        if server is None:
            raise BackendUnavailable("redis-server not found on PATH")
        self._workdir = Path(tempfile.mkdtemp(prefix="conveyor-test-own-redis-"))
        self._log_path = self._workdir / "redis.log"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        # No RDB, no AOF: a server started again in this folder is empty.
        settings = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._command = [server, "--port", str(self.port), "--dir", str(self._workdir), *settings]
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OwnRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def serving(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start serving (empty) and return once it answers PING."""
        if self.serving:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        with self._log_path.open("ab") as log:
            # The child keeps its own copy of the descriptor.
            process = subprocess.Popen(self._command, stdout=log, stderr=subprocess.STDOUT)
        self._process = process
        deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
        while redis_failure(self.url) is not None:
            if process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                output = self._log_path.read_text(errors="replace").strip()
                raise BackendUnavailable(f"redis-server did not start: {output[-500:]}")
            time.sleep(0.05)  # polling a starting server, with a deadline

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill: every client's connection drops at once, and
        what it held is gone (nothing is persisted)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=SERVER_START_TIMEOUT_SECONDS)
        self._process = None

    def restart_empty(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self._workdir, ignore_errors=True)
