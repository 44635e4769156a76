"""Journey steps of deliveries, written together: one round trip per ``delay`` seconds.

Every attempt adds a step; writing each on its own would double the Redis round trips of a
delivery. Steps are best effort (a lost step is a gap in a trace, never a lost event).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from meshruntime.journey import JourneyRecorder
from meshruntime.store import JourneyStep, Store

log = logging.getLogger(__name__)

__all__ = ["JourneyWriter"]


class JourneyWriter:
    def __init__(self, store: Store, recorder: JourneyRecorder | None,
                 on_error: Callable[[Exception], None] | None = None, *, delay: float = 0.01) -> None:
        self.store = store
        self.delay = delay
        self.recorder = recorder
        self._on_error = on_error
        self._buffer: list[JourneyStep] = []
        self._delivered: dict[tuple[str, int, int], tuple[bytes, bytes, bytes, bytes]] = {}
        self._flushing: asyncio.Task | None = None
        self._closing = False

    def add(self, event_id: str | None, step: str, **fields: Any) -> None:
        recorder = self.recorder
        if recorder is None or event_id is None or not recorder.sampled(event_id):
            return
        self._buffer.append(recorder.step(event_id, step, **fields))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    def add_common(self, event_id: str | None, step: str, **fields: Any) -> None:
        """:meth:`add` for a step whose fields repeat across events (``acked`` after one attempt):
        its JSON is encoded once per kind and only the time is filled in."""
        recorder = self.recorder
        if recorder is None or event_id is None or not recorder.sampled(event_id):
            return
        head, tail = recorder.template(step, **fields)
        self._buffer.append(JourneyStep(event_id, head + b"%d" % int(time.time() * 1000) + tail))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    def delivered(self, event_id: str, subscription: str, attempt: int, status: int, latency_ms: float) -> None:
        """The ``attempt`` and ``acked`` steps of an attempt that delivered, as :meth:`add` and
        :meth:`add_common` would write them, for a fraction of their cost: this runs for nearly
        every event. Only the time and the latency are filled in; the rest is encoded once."""
        recorder = self.recorder
        if recorder is None or not recorder.sampled(event_id):
            return
        key = (subscription, attempt, status)
        templates = self._delivered.get(key)
        if templates is None:
            attempt_head, attempt_tail = recorder.template("attempt", subscription=subscription, attempt=attempt,
                                                           status=status, error=None, outcome="delivered")
            acked_head, acked_tail = recorder.template("acked", subscription=subscription, attempts=attempt,
                                                       status=status)
            templates = (attempt_head, attempt_tail[:-1] + b',"latency_ms":', acked_head, acked_tail)
            if len(self._delivered) >= 1000:
                self._delivered.clear()
            self._delivered[key] = templates
        attempt_head, attempt_tail, acked_head, acked_tail = templates
        at = b"%d" % int(time.time() * 1000)
        # latency_ms is the last field of the attempt step; a float's repr is valid JSON
        self._buffer.append(JourneyStep(event_id, b"%s%s%s%r}" % (attempt_head, at, attempt_tail, latency_ms)))
        self._buffer.append(JourneyStep(event_id, acked_head + at + acked_tail))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Write what has gathered every ``delay`` seconds until nothing is left to write."""
        while self._buffer:
            if not self._closing:
                await asyncio.sleep(self.delay)
            steps, self._buffer = self._buffer, []
            try:
                await self.store.record_journey(steps)
            except Exception as error:  # best effort, see the module docstring
                if self._on_error is not None:
                    self._on_error(error)
                log.debug("journey write failed: %s", error)

    async def drain(self) -> None:
        """Write everything now (shutdown, tests)."""
        self._closing = True
        if self._buffer and (self._flushing is None or self._flushing.done()):
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        self._closing = False
