"""HTTP submission: requests per second and latency of `POST /api/v1/jobs` on one API process.

    .venv/bin/python -m bench.http [--backends sqlite,postgres] [--requests 5000]
                                   [--concurrency 32]

The API runs as `conveyor api` (one uvicorn process, as a user starts it); the load comes
from a separate process (`python -m bench.http load ...`) holding `--concurrency` keep-alive
connections, so the client's CPU is not the API's; that client is a minimal HTTP/1.1 one, so
it stays lighter than the server it measures. No worker runs: every request is one
validated, durable submission. Latency is measured by the client, per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from bench.engine import ROOT, fresh_database, percentile
from bench.tasks import build_app
from conveyor.config import load_settings
from conveyor.core.access import Role

WARM_UP_REQUESTS = 200
HTTP_CREATED = 201
LOAD_DEADLINE_SECONDS = 600.0
READY_DEADLINE_SECONDS = 60.0


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]
    failures: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


async def prepare_database(url: str) -> str:
    """Register the benchmark task (as a worker would) and create a write key."""
    app = build_app(load_settings(database_url=url))
    try:
        store = await app.store()
        await store.register_tasks(app.registry.infos())
        _, key = await app.create_api_key(name="bench", role=Role.WRITE)
        return key
    finally:
        await app.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def api_process(url: str, port: int) -> Iterator[str]:
    environment = {**os.environ, "CONVEYOR_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "conveyor", "api", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, process)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_until_ready(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"conveyor api exited with {process.returncode} before ready")
        try:
            if httpx.get(f"{base_url}/health/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling a starting server, with a deadline
    raise TimeoutError(f"conveyor api at {base_url} not ready within {READY_DEADLINE_SECONDS} s")


def run_load(base_url: str, key: str, requests: int, concurrency: int) -> LoadResult:
    """Generate the load from a separate process and read its figures back."""
    command = [sys.executable, "-m", "bench.http", "load", base_url, key]
    command += ["--requests", str(requests), "--concurrency", str(concurrency)]
    completed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    )
    figures = json.loads(completed.stdout)
    return LoadResult(**figures)


async def generate_load(base_url: str, key: str, requests: int, concurrency: int) -> LoadResult:
    address = httpx.URL(base_url)
    host, port = address.host, address.port or 80
    body = json.dumps({"task": "bench.noop", "args": {}}).encode()
    request = (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    connections = [await asyncio.open_connection(host, port) for _ in range(concurrency)]
    try:
        await _send(connections, request, WARM_UP_REQUESTS)
        started = time.perf_counter()
        latencies, failures = await _send(connections, request, requests)
        seconds = time.perf_counter() - started
    finally:
        for _, writer in connections:
            writer.close()
    return LoadResult(requests, seconds, latencies, failures)


async def _send(
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    request: bytes,
    requests: int,
) -> tuple[list[float], int]:
    """Send `requests` requests over keep-alive connections, one in flight per connection.

    A plain HTTP/1.1 client: a general-purpose client library spent more CPU per request
    than the API it measured, on the same two cores.
    """
    remaining = iter(range(requests))
    latencies: list[float] = []
    failures = 0

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal failures
        for _ in remaining:  # the shared iterator hands each request to one connection
            sent = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append((time.perf_counter() - sent) * 1000)
            failures += status != HTTP_CREATED

    await asyncio.wait_for(
        asyncio.gather(*(connection(*pair) for pair in connections)), LOAD_DEADLINE_SECONDS
    )
    return latencies, failures


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (headers and a Content-Length body); return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def bench_backend(backend: str, requests: int, concurrency: int) -> dict[str, str]:
    async with fresh_database(backend) as url:
        key = await prepare_database(url)
        with api_process(url, free_port()) as base_url:
            result = await asyncio.to_thread(run_load, base_url, key, requests, concurrency)
    quantiles = " / ".join(f"{percentile(result.latencies_ms, q):.1f}" for q in (0.50, 0.95, 0.99))
    return {
        f"POST /jobs, {concurrency} connections": f"{result.rate:,.0f} req/s",
        "latency p50/p95/p99": f"{quantiles} ms",
        "non-201 answers": str(result.failures),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    subcommands = parser.add_subparsers(dest="command")
    load = subcommands.add_parser("load", help="generate load (run by the benchmark itself)")
    load.add_argument("base_url")
    load.add_argument("key")
    for command_parser in (parser, load):
        command_parser.add_argument("--requests", type=int, default=5000)
        command_parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--backends", default="sqlite,postgres")
    options = parser.parse_args()
    if options.command == "load":
        result = asyncio.run(
            generate_load(options.base_url, options.key, options.requests, options.concurrency)
        )
        print(json.dumps(result.__dict__))
        return
    for backend in options.backends.split(","):
        figures = asyncio.run(bench_backend(backend, options.requests, options.concurrency))
        print(f"\n{backend} (one API process)")
        for name, figure in figures.items():
            print(f"  {name:<40} {figure:>22}")


if __name__ == "__main__":
    main()
