"""What a test uses to wait on real things: ``wait_for`` a condition (with a bound), or ``until``
it in a coroutine (``until_awaited`` when trying it takes an await), a ``deadline`` for an
asynchronous wait, a ``free_port`` for a server it starts, and a ``Loop`` (asyncio in a thread) for
the runtimes, watchers and receivers a synchronous test runs beside itself."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

INTERVAL = 0.02  # seconds between two tries of a condition


class _Polling:
    """The bound of one wait, the same for every waiter below: each tries its condition its own
    way (calling it, or awaiting it) and pauses its own way (blocking, or letting the event loop
    run). After a try that found the condition false, ``pause`` gives the pause before the next
    one; past ``timeout`` s it fails the test instead, naming ``what`` and the last value found."""

    def __init__(self, timeout: float, what: str, interval: float) -> None:
        self.timeout, self.what, self.interval = timeout, what, interval
        self.deadline = time.monotonic() + timeout

    def pause(self, value: Any) -> float:
        if time.monotonic() > self.deadline:
            pytest.fail(f"timed out after {self.timeout} s waiting for {self.what} (last: {value!r})")
        return self.interval


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = INTERVAL) -> Any:
    """Poll ``condition`` until it is truthy (and return its value) or fail after ``timeout`` s."""
    polling = _Polling(timeout, what, interval)
    while not (value := condition()):
        time.sleep(polling.pause(value))
    return value


async def until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """``wait_for`` in a coroutine: ``condition`` (synchronous) is polled while the loop runs on."""
    polling = _Polling(timeout, what, INTERVAL)
    while not (value := condition()):
        await asyncio.sleep(polling.pause(value))
    return value


async def until_awaited(condition: Callable[[], Awaitable[Any]], what: str, timeout: float = 10.0) -> Any:
    """``until`` for a condition that is a coroutine function (it asks a server, say): each try
    is awaited."""
    polling = _Polling(timeout, what, INTERVAL)
    while not (value := await condition()):
        await asyncio.sleep(polling.pause(value))
    return value


@contextlib.asynccontextmanager
async def deadline(seconds: float, what: str) -> AsyncIterator[None]:
    """Fail the test, naming ``what`` did not happen, unless the block ends within ``seconds``:
    a wait on a real thing under load says what it waited for rather than hanging until
    pytest-timeout stops the whole run (the traceback still shows where it was stuck)."""
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            yield
    except TimeoutError:
        if not scope.expired():  # raised by the block itself, not by the deadline
            raise
        pytest.fail(f"timed out after {seconds} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Loop:
    """An asyncio loop in a thread: coroutines run there (``run``), the ORM and HTTP calls here."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
