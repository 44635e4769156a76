"""The live tap: compact copies of events on ``<prefix>tap:<topic>``, only while someone watches.

The portal sets ``<prefix>tap:watch:<topic>`` (with a TTL it keeps renewing) while a person
looks at a topic's live view. The runtime checks which topics are watched once a second (one
MGET for all topics) and keeps the answer in a set; for every other topic the tap costs one set
lookup per publish. Copies are sent in one pipeline per event-loop turn, after the append.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .cloudevents import CloudEvent
from .keys import KeySpace

log = logging.getLogger(__name__)

__all__ = ["Tap", "compact"]

PREVIEW_CHARS = 256
_MGET_CHUNK = 1000


def compact(event: CloudEvent, *, preview_chars: int = PREVIEW_CHARS) -> dict[str, Any]:
    """The event's attributes and a truncated preview of its data."""
    data = event.data
    if data is None:
        preview, size = None, 0
    elif isinstance(data, bytes):
        preview, size = f"<{len(data)} bytes>", len(data)
    elif isinstance(data, str) and event.raw_json is None:
        preview, size = data, len(data)
    else:
        text = (event.raw_json or orjson.dumps(data)).decode("utf-8", "replace")
        preview, size = text, len(text)
    if preview is not None and len(preview) > preview_chars:
        preview = preview[:preview_chars] + "…"
    return {"attributes": event.attributes, "data_preview": preview, "data_size": size}


class Tap:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        runtime_id: str,
        topics: Callable[[], Iterable[str]],
        interval: float = 1.0,
        on_sent: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.keys = KeySpace(prefix)
        self.runtime_id = runtime_id
        self.interval = interval
        self._topics = topics
        self.watched: frozenset[str] = frozenset()
        self._buffer: list[tuple[str, bytes]] = []
        self._flush_scheduled = False
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._flushes: set[asyncio.Task] = set()
        self.sent = 0
        self._on_sent = on_sent

    # -- which topics are watched ---------------------------------------------------------------
    async def refresh(self) -> frozenset[str]:
        topics = sorted(self._topics())
        watched = set()
        for start in range(0, len(topics), _MGET_CHUNK):
            chunk = topics[start:start + _MGET_CHUNK]
            values = await self.client.mget([self.keys.tap_watch(t) for t in chunk])
            watched.update(t for t, v in zip(chunk, values, strict=True) if v is not None)
        self.watched = frozenset(watched)
        return self.watched

    def poke(self) -> None:
        """Refresh now (a new configuration brought new topics)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except (RedisError, OSError) as error:
                log.debug("tap: cannot read watch keys: %s", error)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tap-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._flush()

    # -- sending --------------------------------------------------------------------------------
    def offer(self, topic: str, event: CloudEvent, outcome: str, **fields: Any) -> None:
        """Send a compact copy if ``topic`` is watched (the caller checks ``in tap.watched`` first)."""
        message = compact(event)
        message.update(topic=topic, outcome=outcome, runtime=self.runtime_id, at=int(time.time() * 1000))
        message.update(fields)
        self._buffer.append((self.keys.tap(topic), orjson.dumps(message)))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._spawn_flush)

    def _spawn_flush(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush())
        self._flushes.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        self._flush_scheduled = False
        buffer, self._buffer = self._buffer, []
        if not buffer:
            return
        pipe = self.client.pipeline(transaction=False)
        for channel, message in buffer:
            pipe.publish(channel, message)
        try:
            await pipe.execute()
            self.sent += len(buffer)
            if self._on_sent is not None:
                self._on_sent(len(buffer))
        except (RedisError, OSError) as error:  # the tap is best effort: a lost preview is no loss
            log.debug("tap: publish failed: %s", error)
