"""The handler thread pool: at most N threads, reused when idle, and a stuck handler
never keeps a stopped worker's process alive."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from conveyor.runtime.threads import HandlerThreads

WAIT = 30.0


def test_calls_run_on_at_most_max_workers_daemon_threads() -> None:
    pool = HandlerThreads(2)
    release = threading.Event()
    futures = [
        pool.submit(lambda: (release.wait(WAIT), threading.current_thread())) for _ in range(4)
    ]
    release.set()
    threads = {future.result(timeout=WAIT)[1] for future in futures}
    pool.shutdown()

    assert len(threads) <= 2
    assert all(thread.daemon for thread in threads)


def test_an_idle_thread_is_reused_rather_than_a_new_one_started() -> None:
    pool = HandlerThreads(4)
    first = pool.submit(threading.current_thread).result(timeout=WAIT)
    second = pool.submit(threading.current_thread).result(timeout=WAIT)
    pool.shutdown()

    assert first is second


def test_results_and_errors_reach_the_caller() -> None:
    pool = HandlerThreads(1)

    def explode() -> None:
        raise ValueError("boom")

    assert pool.submit(pow, 2, 10).result(timeout=WAIT) == 1024
    with pytest.raises(ValueError, match="boom"):
        pool.submit(explode).result(timeout=WAIT)
    pool.shutdown()


def test_after_shutdown_new_calls_are_refused_and_queued_ones_cancelled() -> None:
    pool = HandlerThreads(1)
    started, release = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return release.wait(WAIT)

    running = pool.submit(hold)
    queued = pool.submit(pow, 2, 2)
    assert started.wait(WAIT)

    pool.shutdown(wait=False, cancel_futures=True)
    assert pool.busy == 1  # the running call is left to finish (or be abandoned at exit)
    release.set()

    assert queued.cancelled()
    assert running.result(timeout=WAIT) is True
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.submit(pow, 2, 2)


def test_a_stuck_call_does_not_keep_the_process_alive() -> None:
    program = (
        "import time; from conveyor.runtime.threads import HandlerThreads; "
        "pool = HandlerThreads(1); pool.submit(time.sleep, 3600); "
        "pool.shutdown(wait=False, cancel_futures=True); print('exiting')"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=WAIT, check=True
    )
    assert result.stdout.strip() == "exiting"
