"""Serving the HTTP API with uvicorn inside a command's own event loop (`api`, `up`).

The command, not uvicorn, owns three things:

- the socket: it is bound before anything else starts, so a taken port is one clear error
  (and `--port 0` picks a free port whose number the command knows);
- the signals: uvicorn's own handling re-raises SIGINT after its shutdown, which would turn
  a graceful Ctrl-C into exit code 130, and `up` must stop its workers on the same signal;
- the logs: uvicorn's access log is off, because the app logs each request itself without
  query strings or keys; uvicorn's other messages go through the command's handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn

from conveyor.api.shutdown import begin_shutdown
from conveyor.cli import heap
from conveyor.cli.errors import CommandFailed
from conveyor.core.errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

# Open streams (Server-Sent Events, long polls) get this long to end after a stop request.
API_SHUTDOWN_SECONDS = 5
READY_PATH = "/health/ready"
# Each readiness probe gives up after this long; the caller decides how long to keep trying.
PROBE_TIMEOUT_SECONDS = 2.0
PROBE_INTERVAL_SECONDS = 0.1
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers (the command installs its own), which
    freezes the process's start-up heap once the app has started (see heap.py)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            heap.freeze()


class ApiServer:
    """One FastAPI app served on an already bound socket until `request_stop()`."""

    def __init__(self, application: FastAPI, listener: socket.socket) -> None:
        config = uvicorn.Config(
            application,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=API_SHUTDOWN_SECONDS,
        )
        self._server = _Server(config)
        self._listener = listener
        self._application = application

    async def serve(self) -> None:
        """Serve until stopped. Raises CommandFailed if the app's startup failed."""
        try:
            await self._server.serve(sockets=[self._listener])
        except SystemExit:
            # uvicorn exits this way when the app's lifespan startup fails; it has logged why.
            raise CommandFailed("the API could not start (see the log above)") from None
        finally:
            self._listener.close()

    def request_stop(self) -> None:
        """First call: stop accepting and let open requests end. Second call: stop at once."""
        if self._server.should_exit:
            self._server.force_exit = True
        begin_shutdown(self._application)  # open event streams and long polls end now
        self._server.should_exit = True


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or an error that says why there is none."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise ConfigError(
            f"--host {host!r}: not an address to listen on ({error.strerror})"
        ) from None
    listener = socket.socket(family, kind, protocol)
    # Lets a restarted server reuse the port while the last one's connections linger in
    # TIME_WAIT; a port another program listens on is still refused.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen()
    except OSError as error:
        listener.close()
        reason = error.strerror or str(error)
        raise CommandFailed(f"cannot listen on {display_host(host)}:{port}: {reason}") from None
    return listener


def local_address(listener: socket.socket) -> tuple[str, int]:
    """Where a local client reaches the listener (a wildcard address becomes loopback)."""
    host, port = listener.getsockname()[:2]
    return _LOOPBACK.get(host, host), port


def base_url(listener: socket.socket) -> str:
    host, port = local_address(listener)
    return f"http://{display_host(host)}:{port}"


def display_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def wait_until_ready(listener: socket.socket, *, timeout: float) -> None:
    """Return once the API answers its readiness check with 200; CommandFailed after
    `timeout` seconds, with the last answer (or connection error) in the message."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await _probe_ready(listener)
        if answer == "HTTP 200":
            return
        if time.monotonic() >= deadline:
            raise CommandFailed(f"the API was not ready after {timeout:g} s: {answer}")
        await asyncio.sleep(PROBE_INTERVAL_SECONDS)


async def _probe_ready(listener: socket.socket) -> str:
    # A plain HTTP/1.1 request over a socket: no HTTP client library, and no proxy from the
    # environment can come between the command and its own API.
    host, port = local_address(listener)
    request = f"GET {READY_PATH} HTTP/1.1\r\nHost: {display_host(host)}:{port}\r\n"
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"{request}Connection: close\r\n\r\n".encode())
                status_line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError) as error:
        return f"{type(error).__name__}: {error}"
    parts = status_line.decode("latin-1").split()
    return f"HTTP {parts[1]}" if len(parts) > 1 else "no answer"
