"""Coalesces the appends of concurrent requests into pipelined store writes.

At low load a request's events go to the store at once (nothing waits for company). While a
write is in flight, requests that arrive queue up and leave together in the next write, so under
load many small requests cost few round trips and approach the throughput of a batching client,
while a lone request never waits for a timer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from .store import AppendEntry, JourneyStep, Store, StoreError

__all__ = ["AppendCoalescer"]


class AppendCoalescer:
    """Pipelines appends for many requests; ``append`` returns each request's own stream ids.

    ``max_in_flight`` writes may be outstanding at once (more overlap Python with Redis, fewer
    batch better); one write carries at most ``max_batch`` events, whole requests only.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_in_flight: int = 2,
        max_batch: int = 2000,
        observe: Callable[[int, float], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.store = store
        self.max_in_flight = max_in_flight
        self.max_batch = max_batch
        self._observe = observe
        self._on_error = on_error
        self._queue: list[tuple[Sequence[AppendEntry], Sequence[JourneyStep], asyncio.Future]] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task] = set()

    @property
    def pending(self) -> int:
        """Requests queued or being written."""
        return len(self._queue) + self._in_flight

    async def append(
        self, entries: Sequence[AppendEntry], journey: Sequence[JourneyStep] = ()
    ) -> list[str]:
        """Append one request's events (and its journey steps); raises :class:`StoreError`."""
        # A cancelled waiter only cancels its own future; the shared write goes on regardless.
        return await self.submit(entries, journey)

    def submit(self, entries: Sequence[AppendEntry], journey: Sequence[JourneyStep] = ()) -> asyncio.Future:
        """:meth:`append` without waiting: a future of the stream ids (or of the StoreError).
        Costs no task, which matters at tens of thousands of requests a second."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((entries, journey, future))
        self._idle.clear()
        if self._in_flight < self.max_in_flight:
            self._start_write()
        return future

    def _start_write(self) -> None:
        queue = self._queue
        if len(queue) == 1 or self.max_batch <= 0:
            batch, self._queue = queue, []
        else:
            size = 0
            cut = 0
            for cut, (entries, _journey, _future) in enumerate(queue):  # noqa: B007
                if size and size + len(entries) > self.max_batch:
                    break
                size += len(entries)
            else:
                cut = len(queue)
            batch, self._queue = queue[:cut], queue[cut:]
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._write(batch))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _write(self, batch) -> None:
        try:
            if len(batch) == 1:
                entries, journey, _ = batch[0]
            else:
                entries = [entry for item in batch for entry in item[0]]
                journey = [step for item in batch for step in item[1]]
            started = time.perf_counter()
            try:
                ids = await self.store.append_many(entries, journey=journey)
            except Exception as error:  # every waiter gets the failure, none is left hanging
                if self._on_error is not None:
                    self._on_error(error)
                failure = error if isinstance(error, StoreError) else StoreError(f"append failed: {error!r}")
                for _entries, _journey, future in batch:
                    if not future.done():
                        future.set_exception(failure)
                return
            if self._observe is not None:
                self._observe(len(entries), time.perf_counter() - started)
            offset = 0
            for item_entries, _journey, future in batch:
                n = len(item_entries)
                if not future.done():
                    future.set_result(ids[offset:offset + n])
                offset += n
        finally:
            self._in_flight -= 1
            if self._queue:
                self._start_write()
            elif self._in_flight == 0:
                self._idle.set()

    async def drain(self) -> None:
        """Wait until every queued append has been written (graceful shutdown)."""
        await self._idle.wait()
