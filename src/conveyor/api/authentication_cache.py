"""Successful authentications remembered for a few seconds, so a request costs no key lookup.

Entries are keyed by the SHA-256 digest of the presented key, never by the key itself.
A key revoked through this process is forgotten at once; a revocation made by another
process takes effect here once the entry expires (`ttl_seconds`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from conveyor.core.access import Principal

DEFAULT_TTL_SECONDS = 5.0
# More distinct keys than this within one TTL means something unusual: start over.
MAX_ENTRIES = 10_000


class AuthenticationCache:
    def __init__(
        self,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        expires, principal = entry
        if self.clock() >= expires:
            del self._entries[digest]
            return None
        return principal

    def put(self, digest: str, principal: Principal) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[digest] = (self.clock() + self.ttl_seconds, principal)

    def forget_key(self, key_id: str) -> None:
        """Drop every entry of the key `key_id` (it was just revoked)."""
        stale = [
            digest for digest, (_, principal) in self._entries.items() if principal.key_id == key_id
        ]
        for digest in stale:
            del self._entries[digest]
