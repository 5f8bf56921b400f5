"""Reading a streamed response while it is produced (httpx's ASGITransport waits for the end).

The test drives the ASGI app directly: it sees each chunk as it is sent, and it can
disconnect like a client that goes away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import ASGIApp, Message

WAIT = 30.0


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    data: Any


@dataclass
class EventStream:
    """The response's status and headers, and its events one at a time."""

    status: int
    headers: dict[str, str]
    _messages: asyncio.Queue[Message]
    _buffer: str = ""
    _ended: bool = False
    comments: list[str] = field(default_factory=list)

    async def next_event(self, timeout: float = WAIT) -> Event | None:
        """The next event, or None once the server has ended the stream."""
        while "\n\n" not in self._buffer:
            if self._ended:
                return None
            message = await asyncio.wait_for(self._messages.get(), timeout)
            self._buffer += message.get("body", b"").decode()
            self._ended = not message.get("more_body", False)
        block, self._buffer = self._buffer.split("\n\n", 1)
        return self._parse(block) or await self.next_event(timeout)

    async def remaining(self) -> list[Event]:
        events = []
        while (event := await self.next_event()) is not None:
            events.append(event)
        return events

    def _parse(self, block: str) -> Event | None:
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                self.comments.append(line)
            else:
                name, _, value = line.partition(": ")
                fields[name] = value
        if "data" not in fields:
            return None
        return Event(fields.get("event", "message"), orjson.loads(fields["data"]))


@asynccontextmanager
async def open_stream(
    app: ASGIApp, path: str, headers: Mapping[str, str]
) -> AsyncIterator[EventStream]:
    """GET `path`; leaving the block disconnects, and the app must then finish."""
    messages: asyncio.Queue[Message] = asyncio.Queue()
    gone = asyncio.Event()
    request_sent = False

    async def receive() -> Message:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await messages.put(message)

    async def serve() -> None:
        await app(_scope(path, headers), receive, send)

    running = asyncio.create_task(serve())
    try:
        start = await asyncio.wait_for(messages.get(), WAIT)
        response_headers = {
            name.decode().lower(): value.decode() for name, value in start["headers"]
        }
        yield EventStream(start["status"], response_headers, messages)
    finally:
        gone.set()
        await asyncio.wait_for(running, WAIT)


def _scope(path: str, headers: Mapping[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("conveyor.test", 80),
    }
