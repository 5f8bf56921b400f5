"""Test-only fault points: let fault tests kill a real process at one exact step.

A process started with one of these variables set to "1" exits at once (status
FAULT_EXIT_CODE, no cleanup, as a SIGKILL would leave it) when it reaches that step. Nothing
sets them outside the fault tests (tests/integration/test_redis_faults.py).
"""

from __future__ import annotations

import os

EXIT_AFTER_POP = "CONVEYOR_TEST_EXIT_AFTER_POP"
"""A worker dies with job ids popped from Redis and not claimed in the store."""

EXIT_BEFORE_PUBLISH = "CONVEYOR_TEST_EXIT_BEFORE_PUBLISH"
"""A producer (the API) dies after committing a job and before publishing its id."""

FAULT_EXIT_CODE = 86


def exit_if_armed(variable: str) -> None:
    if os.environ.get(variable) == "1":
        os._exit(FAULT_EXIT_CODE)
