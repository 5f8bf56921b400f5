"""Job ids (UUIDv7: time-ordered, so the newest job has the largest id) and lease tokens."""

from __future__ import annotations

import os
import secrets
import threading
import time

_COUNTER_BITS = 12
_COUNTER_LIMIT = 1 << _COUNTER_BITS
_RANDOM_BYTES = 8
_RANDOM_PAGE_BYTES = 4096
_VERSION_7 = 0x7 << 76
_VARIANT = 0b10 << 62  # RFC 9562


class _Version7:
    """UUIDv7 with a 12-bit counter, so ids made in the same millisecond stay in order.

    The millisecond comes from this process's clock: ids only order listings and break
    ties in claim order; every lease and schedule instant comes from the database.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_millisecond = 0
        self._counter = 0
        self._random = b""  # from the OS's generator, as secrets draws it, a page at a time
        self._random_used = 0

    def next(self) -> str:
        """The next id in canonical form."""
        return self.next_many(1)[0]

    def next_many(self, count: int) -> list[str]:
        """`count` ids in order, under one hold of the lock and one read of the clock (a
        uuid.UUID object per job, and the lock and clock per job, were a noticeable part of
        a bulk enqueue's client time)."""
        with self._lock:
            millisecond = time.time_ns() // 1_000_000
            positions = [self._advance(millisecond) for _ in range(count)]
            random_bits = [self._random_number(62) for _ in range(count)]
        return [
            _canonical(instant << 80 | _VERSION_7 | counter << 64 | _VARIANT | bits)
            for (instant, counter), bits in zip(positions, random_bits, strict=True)
        ]

    def _advance(self, millisecond: int) -> tuple[int, int]:
        # A clock that stepped back must not reorder ids: stay on the last millisecond.
        if millisecond > self._last_millisecond:
            self._last_millisecond = millisecond
            self._counter = self._random_number(_COUNTER_BITS - 1)
        else:
            self._counter += 1
            if self._counter >= _COUNTER_LIMIT:
                self._last_millisecond += 1
                self._counter = 0
        return self._last_millisecond, self._counter

    def forget_random(self) -> None:
        self._random = b""
        self._random_used = 0

    def _random_number(self, bits: int) -> int:
        """A random number of up to 64 bits. One read of the OS's generator per id was a
        system call for every job of a bulk enqueue; a page serves hundreds of ids."""
        if self._random_used + _RANDOM_BYTES > len(self._random):
            self._random = os.urandom(_RANDOM_PAGE_BYTES)
            self._random_used = 0
        start = self._random_used
        self._random_used = start + _RANDOM_BYTES
        chunk = self._random[start : self._random_used]
        return int.from_bytes(chunk, "big") & ((1 << bits) - 1)


def _canonical(value: int) -> str:
    digits = value.to_bytes(16, "big").hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


_generator = _Version7()
# A forked child must not hand out the random bits its parent also holds: same millisecond,
# same counter, same bits would be the same id.
os.register_at_fork(after_in_child=_generator.forget_random)


def new_job_id() -> str:
    return _generator.next()


def new_job_ids(count: int) -> list[str]:
    """`count` new job ids, in creation order."""
    return _generator.next_many(count)


def new_lease_token() -> str:
    return secrets.token_hex(16)
