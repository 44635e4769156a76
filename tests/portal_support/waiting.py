"""What a test uses to wait on real things: ``wait_for`` a condition (with a bound), or ``until``
it in a coroutine, a ``deadline`` for an asynchronous wait, a ``free_port`` for a server it
starts, and a ``Loop`` (asyncio in a thread) for the runtimes, watchers and receivers a
synchronous test runs beside itself."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

INTERVAL = 0.02  # seconds between two tries of a condition


class _Polling:
    """The one polling loop of ``wait_for`` and ``until``. Iterating it tries ``condition`` until
    it is truthy (its value is then ``value``) and yields the pause before each next try, which
    each waiter takes its own way (blocking, or letting the event loop run); past ``timeout`` s
    the test fails, naming ``what``."""

    def __init__(self, condition: Callable[[], Any], timeout: float, what: str, interval: float) -> None:
        self.condition, self.timeout, self.what, self.interval = condition, timeout, what, interval
        self.value: Any = None

    def __iter__(self) -> Iterator[float]:
        deadline = time.monotonic() + self.timeout
        while not (value := self.condition()):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {self.timeout} s waiting for {self.what}")
            yield self.interval
        self.value = value


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = INTERVAL) -> Any:
    """Poll ``condition`` until it is truthy (and return its value) or fail after ``timeout`` s."""
    polling = _Polling(condition, timeout, what, interval)
    for pause in polling:
        time.sleep(pause)
    return polling.value


async def until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """``wait_for`` in a coroutine: ``condition`` (synchronous) is polled while the loop runs on."""
    polling = _Polling(condition, timeout, what, INTERVAL)
    for pause in polling:
        await asyncio.sleep(pause)
    return polling.value


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
