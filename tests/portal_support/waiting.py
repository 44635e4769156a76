"""What a test uses to wait on real things: ``wait_for`` a condition (with a bound), a
``deadline`` for an asynchronous wait, a ``free_port`` for a server it starts, and a ``Loop``
(asyncio in a thread) for the runtimes, watchers and receivers it runs beside itself."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.02):
    """Poll ``condition`` until it is truthy (and return its value) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


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
