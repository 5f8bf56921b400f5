"""Calls posted to a loop from other threads: all run, in order, on the loop's thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from conveyor.runtime.cross_thread import CrossThreadCalls

WAIT = 10.0


async def test_calls_from_many_threads_all_run_on_the_loop_in_each_threads_order() -> None:
    loop = asyncio.get_running_loop()
    calls = CrossThreadCalls(loop)
    seen: list[tuple[int, int, int]] = []
    done = asyncio.Event()
    threads, per_thread = 4, 500

    def record(thread: int, index: int) -> None:
        seen.append((thread, index, threading.get_ident()))
        if len(seen) == threads * per_thread:
            done.set()

    def post_all(thread: int) -> None:
        for index in range(per_thread):
            calls.post(record, thread, index)

    posters = [threading.Thread(target=post_all, args=(n,)) for n in range(threads)]
    for poster in posters:
        poster.start()
    await asyncio.wait_for(done.wait(), WAIT)
    for poster in posters:
        poster.join()

    assert {ident for _, _, ident in seen} == {threading.get_ident()}
    for thread in range(threads):
        assert [index for t, index, _ in seen if t == thread] == list(range(per_thread))


async def test_a_failing_call_does_not_lose_the_ones_after_it() -> None:
    loop = asyncio.get_running_loop()
    reported: list[BaseException | None] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context.get("exception")))
    calls = CrossThreadCalls(loop)
    ran = asyncio.Event()

    def fail() -> None:
        raise ValueError("boom")

    def post_both() -> None:
        calls.post(fail)
        calls.post(ran.set)

    threading.Thread(target=post_both).start()
    await asyncio.wait_for(ran.wait(), WAIT)

    assert [type(error) for error in reported] == [ValueError]


def test_posting_to_a_closed_loop_raises_and_a_later_post_tries_again() -> None:
    loop = asyncio.new_event_loop()
    calls = CrossThreadCalls(loop)
    loop.close()

    for _ in range(2):
        with pytest.raises(RuntimeError):
            calls.post(print)
