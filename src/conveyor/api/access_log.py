"""One log line per request on `conveyor.api.access`: method, path, status, duration.

The query string is left out on purpose: a client that puts an API key there (refused
with 401) must not get it written to the log. Headers are never logged.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("conveyor.api.access")

_PATH_SAFE = "/:@!$&'()*+,;=-._~"


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before responding

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            # Percent-encoded again, so that a %0A in the path cannot forge a log line.
            path = quote(scope["path"], safe=_PATH_SAFE)
            logger.info("%s %s %d %.1fms", scope["method"], path, status, elapsed_ms)
