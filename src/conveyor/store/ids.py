"""Job ids (UUIDv7: time-ordered, so the newest job has the largest id) and lease tokens."""

from __future__ import annotations

import secrets
import threading
import time
import uuid

_COUNTER_BITS = 12
_COUNTER_LIMIT = 1 << _COUNTER_BITS


class _Version7:
    """UUIDv7 with a 12-bit counter, so ids made in the same millisecond stay in order.

    The millisecond comes from this process's clock: ids only order listings and break
    ties in claim order; every lease and schedule instant comes from the database.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_millisecond = 0
        self._counter = 0

    def next(self) -> uuid.UUID:
        with self._lock:
            millisecond, counter = self._advance(time.time_ns() // 1_000_000)
        value = millisecond << 80
        value |= 0x7 << 76  # version 7
        value |= counter << 64
        value |= 0b10 << 62  # RFC 9562 variant
        value |= secrets.randbits(62)
        return uuid.UUID(int=value)

    def _advance(self, millisecond: int) -> tuple[int, int]:
        # A clock that stepped back must not reorder ids: stay on the last millisecond.
        if millisecond > self._last_millisecond:
            self._last_millisecond = millisecond
            self._counter = secrets.randbits(_COUNTER_BITS - 1)
        else:
            self._counter += 1
            if self._counter >= _COUNTER_LIMIT:
                self._last_millisecond += 1
                self._counter = 0
        return self._last_millisecond, self._counter


_generator = _Version7()


def new_job_id() -> str:
    return str(_generator.next())


def new_lease_token() -> str:
    return secrets.token_hex(16)
