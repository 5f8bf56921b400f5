"""The handler loop: async handlers run on their own thread and loop, so one that blocks
its loop never stalls the caller's; awaiting one behaves like awaiting it in place. Each
test runs with the handler loop on uvloop (the default where installed) and on asyncio's."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from conveyor.config import EventLoopChoice
from conveyor.runtime.event_loops import loop_factory, loop_name
from conveyor.runtime.handler_loop import HandlerCall, HandlerLoop

WAIT = 30.0
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_choice(request: pytest.FixtureRequest) -> EventLoopChoice:
    choice: EventLoopChoice = request.param
    return choice


@pytest.fixture
def new_handler_loop(loop_choice: EventLoopChoice) -> Callable[[], HandlerLoop]:
    return lambda: HandlerLoop(loop_factory=loop_factory(loop_choice))


@pytest.fixture
async def handler_loop(new_handler_loop: Callable[[], HandlerLoop]) -> AsyncIterator[HandlerLoop]:
    loop = new_handler_loop()
    loop.start()
    yield loop
    assert await loop.stop(timeout=WAIT)


def held_until_cancelled(
    started: threading.Event, cleaned_up: threading.Event
) -> Callable[[], Awaitable[str]]:
    """A handler that waits until it is cancelled, then takes a moment to clean up."""

    async def hold() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.05)
            cleaned_up.set()
        return "never"

    return hold


async def test_a_handler_runs_on_the_handler_thread_with_the_callers_context(
    handler_loop: HandlerLoop, loop_choice: EventLoopChoice
) -> None:
    request_id.set("req-42")

    async def where() -> tuple[str, str, str]:
        loop = asyncio.get_running_loop()
        kind = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
        return threading.current_thread().name, request_id.get(), kind

    assert await handler_loop.submit(where).result() == (
        "conveyor-handlers",
        "req-42",
        loop_name(loop_choice),
    )


async def test_a_handler_blocking_its_loop_does_not_stall_the_callers_loop(
    handler_loop: HandlerLoop,
) -> None:
    started, release = threading.Event(), threading.Event()

    async def block() -> str:
        started.set()
        release.wait(WAIT)  # the bug this guards against: blocking inside async def
        return "done"

    call = handler_loop.submit(block)
    await asyncio.to_thread(started.wait, WAIT)
    # The handler blocks its loop now; this one still runs other tasks.
    assert await asyncio.create_task(asyncio.sleep(0, result="running")) == "running"
    assert not release.is_set()
    release.set()
    assert await call.result() == "done"


async def test_errors_reach_the_caller_and_system_exit_does_not_stop_the_loop(
    handler_loop: HandlerLoop,
) -> None:
    async def leave() -> None:
        raise SystemExit(3)

    async def answer() -> int:
        return 42

    with pytest.raises(SystemExit):
        await handler_loop.submit(leave).result()
    assert await handler_loop.submit(answer).result() == 42


async def test_cancelling_the_caller_cancels_the_handler_and_waits_for_its_cleanup(
    handler_loop: HandlerLoop,
) -> None:
    started, cleaned_up = threading.Event(), threading.Event()
    hold = held_until_cancelled(started, cleaned_up)

    waiting = asyncio.create_task(handler_loop.submit(hold).result())
    await asyncio.to_thread(started.wait, WAIT)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert cleaned_up.is_set()


async def test_a_handler_that_catches_the_cancellation_keeps_its_result(
    handler_loop: HandlerLoop,
) -> None:
    started = threading.Event()

    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "finished anyway"
        return "never"

    waiting = asyncio.create_task(handler_loop.submit(stubborn).result())
    await asyncio.to_thread(started.wait, WAIT)
    waiting.cancel()
    assert await waiting == "finished anyway"


async def test_a_caller_without_a_task_hears_of_the_end_and_can_cancel(
    handler_loop: HandlerLoop,
) -> None:
    """As the worker runs attempts: `when_done` on the caller's loop, `cancel()`, `outcome()`."""
    started, cleaned_up = threading.Event(), threading.Event()
    ended: asyncio.Queue[HandlerCall[str]] = asyncio.Queue()
    hold = held_until_cancelled(started, cleaned_up)

    async def answer() -> str:
        return "42"

    async def fail() -> str:
        raise ValueError("boom")

    calls = [handler_loop.submit(handler) for handler in (answer, fail, hold)]
    for call in calls:
        call.when_done(ended.put_nowait)
    assert (await asyncio.wait_for(ended.get(), WAIT)).outcome() == "42"
    with pytest.raises(ValueError, match="boom"):
        (await asyncio.wait_for(ended.get(), WAIT)).outcome()

    await asyncio.to_thread(started.wait, WAIT)
    holding = calls[2]
    holding.cancel()
    cancelled = await asyncio.wait_for(ended.get(), WAIT)
    assert cancelled is holding
    assert cleaned_up.is_set()  # heard of only once the handler has unwound
    with pytest.raises(asyncio.CancelledError):
        cancelled.outcome()
    cancelled.cancel()  # once done, a cancel changes nothing


async def test_stopping_while_a_handler_blocks_releases_its_caller(
    new_handler_loop: Callable[[], HandlerLoop],
) -> None:
    handler_loop = new_handler_loop()
    handler_loop.start()
    started, release = threading.Event(), threading.Event()

    async def stuck() -> None:
        started.set()
        release.wait(WAIT)

    waiting = asyncio.create_task(handler_loop.submit(stuck).result())
    await asyncio.to_thread(started.wait, WAIT)
    began = time.monotonic()
    assert not await handler_loop.stop(timeout=0.1)
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert time.monotonic() - began < WAIT
    with pytest.raises(RuntimeError, match="not running"):
        handler_loop.submit(stuck)
    release.set()  # let the abandoned thread end


async def test_stop_cancels_what_handlers_left_running(
    new_handler_loop: Callable[[], HandlerLoop],
) -> None:
    handler_loop = new_handler_loop()
    handler_loop.start()
    cancelled = threading.Event()
    spawned: list[asyncio.Task[None]] = []

    async def spawn() -> None:
        async def background() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        spawned.append(asyncio.create_task(background()))

    await handler_loop.submit(spawn).result()
    assert await handler_loop.stop(timeout=WAIT)
    assert cancelled.is_set()
