"""The live tap: copies of events and refusals, sent only while someone watches.

The portal sets ``<prefix>tap:watch:<topic>`` (with a TTL it keeps renewing) while a person
looks at a topic's live view, and a refusals watch key per scope (every refusal, one topic's, one
application's: see :class:`~meshruntime.keys.KeySpace`) while a person looks at a refusals panel.
The runtime checks which are watched once a second (MGETs of every key, off the publish path)
and keeps the answer in sets; for every other topic the tap costs one set lookup per publish.

Copies are sent after the append, gathered for ``flush_interval`` (10 ms) and sent in one
pipeline, the copies for one channel in one message (a JSON array). A Redis round trip costs the
runtime more than a dozen copies do, and the portal parses and fans out one message instead of
one per event: this is what keeps a watched topic at nearly full speed.

A copy carries the event's data whole up to ``data_limit`` bytes, so that the portal can show it
pretty-printed, as text or as hex; larger data is cut there and marked truncated.
"""

from __future__ import annotations

import asyncio
import base64
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

__all__ = ["DATA_LIMIT", "Tap", "compact"]

#: Bytes of an event's data that a tap copy carries (``--tap-data-limit``). Above it the copy
#: carries the first bytes and ``data_truncated``. Large enough for the payloads people read in a
#: browser; small enough that a tap message stays cheap for the runtime and for Redis.
DATA_LIMIT = 64 * 1024
_MGET_CHUNK = 1000
#: A tap message (one array of copies) stays below this many bytes; a larger turn sends several.
_MESSAGE_BYTES = 1 << 20


def compact(event: CloudEvent, *, data_limit: int = DATA_LIMIT) -> dict[str, Any]:
    """The event's attributes, its data (up to ``data_limit`` bytes) and the size of its data.

    ``data_encoding`` says how ``data`` is given: ``json`` (the JSON value itself), ``text``, or
    ``base64`` (binary data). Data cut at the limit is text (or base64) with ``data_truncated``.
    """
    data = event.data
    copy: dict[str, Any] = {"attributes": event.attributes}
    if data is None:
        copy["data_size"] = 0
        return copy
    if isinstance(data, bytes):
        size = len(data)
        copy["data"] = base64.b64encode(data[:data_limit]).decode("ascii")
        copy["data_encoding"] = "base64"
    elif isinstance(data, str) and event.raw_json is None:
        encoded = data.encode("utf-8")
        size = len(encoded)
        copy["data"] = data if size <= data_limit else encoded[:data_limit].decode("utf-8", "ignore")
        copy["data_encoding"] = "text"
    else:
        raw = event.raw_json if event.raw_json is not None else orjson.dumps(data)
        size = len(raw)
        if size <= data_limit:
            copy["data"] = orjson.Fragment(raw)  # the producer's JSON, embedded as it is
            copy["data_encoding"] = "json"
        else:
            copy["data"] = raw[:data_limit].decode("utf-8", "ignore")
            copy["data_encoding"] = "text"
    copy["data_size"] = size
    if size > data_limit:
        copy["data_truncated"] = True
    return copy


class Tap:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        runtime_id: str,
        topics: Callable[[], Iterable[str]],
        applications: Callable[[], Iterable[str]] = tuple,
        interval: float = 1.0,
        data_limit: int = DATA_LIMIT,
        flush_interval: float = 0.01,
        on_sent: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.keys = KeySpace(prefix)
        self.runtime_id = runtime_id
        self.interval = interval
        self.data_limit = data_limit
        self.flush_interval = flush_interval
        self._topics = topics
        self._applications = applications
        #: topics whose events are watched
        self.watched: frozenset[str] = frozenset()
        #: which refusals are watched: all of them, those on these topics, those of these applications
        self.refusals_all = False
        self.refusal_topics: frozenset[str] = frozenset()
        self.refusal_applications: frozenset[str] = frozenset()
        self._buffer: list[tuple[str, bytes]] = []
        self._flush_scheduled: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._flushes: set[asyncio.Task] = set()
        self.sent = 0
        self._on_sent = on_sent

    # -- what is watched ------------------------------------------------------------------------
    async def refresh(self) -> frozenset[str]:
        """Read every watch key; return the topics whose events are watched."""
        topics = sorted(self._topics())
        applications = sorted(self._applications())
        keys = self.keys
        names = [keys.tap_watch(t) for t in topics]
        names += [keys.topic_refusals_watch(t) for t in topics]
        names += [keys.application_refusals_watch(a) for a in applications]
        names.append(keys.refusals_watch)
        values = []
        for start in range(0, len(names), _MGET_CHUNK):
            values += await self.client.mget(names[start:start + _MGET_CHUNK])
        n = len(topics)
        self.watched = frozenset(t for t, v in zip(topics, values[:n], strict=True) if v is not None)
        self.refusal_topics = frozenset(t for t, v in zip(topics, values[n:2 * n], strict=True) if v is not None)
        self.refusal_applications = frozenset(
            a for a, v in zip(applications, values[2 * n:-1], strict=True) if v is not None)
        self.refusals_all = values[-1] is not None
        return self.watched

    def watches_refusals(self, topic: str, application: str | None) -> bool:
        return self.refusals_all or topic in self.refusal_topics or application in self.refusal_applications

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
        """Send a copy if ``topic`` is watched (the caller checks ``in tap.watched`` first)."""
        message = compact(event, data_limit=self.data_limit)
        message.update(topic=topic, outcome=outcome, runtime=self.runtime_id, at=int(time.time() * 1000))
        message.update(fields)
        self._send(self.keys.tap(topic), orjson.dumps(message))

    def offer_refusal(self, topic: str, application: str | None, record: dict[str, Any]) -> None:
        """Send a refusal on every watched scope it belongs to (the caller checks
        :meth:`watches_refusals` first). ``record`` says why; topic, application, runtime and time
        are added here."""
        keys = self.keys
        channels = []
        if self.refusals_all:
            channels.append(keys.refusals)
        if topic in self.refusal_topics:
            channels.append(keys.topic_refusals(topic))
        if application is not None and application in self.refusal_applications:
            channels.append(keys.application_refusals(application))
        if not channels:
            return
        message = orjson.dumps({"topic": topic, "application": application, **record,
                                "runtime": self.runtime_id, "at": int(time.time() * 1000)})
        for channel in channels:
            self._send(channel, message)

    def _send(self, channel: str, message: bytes) -> None:
        self._buffer.append((channel, message))
        if self._flush_scheduled is None:
            self._flush_scheduled = asyncio.get_running_loop().call_later(self.flush_interval, self._spawn_flush)

    def _spawn_flush(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush())
        self._flushes.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        if self._flush_scheduled is not None:
            self._flush_scheduled.cancel()  # when stopping: now, not at the timer
            self._flush_scheduled = None
        buffer, self._buffer = self._buffer, []
        if not buffer:
            return
        by_channel: dict[str, list[bytes]] = {}
        for channel, message in buffer:
            by_channel.setdefault(channel, []).append(message)
        pipe = self.client.pipeline(transaction=False)
        for channel, messages in by_channel.items():
            for part in _arrays(messages):
                pipe.publish(channel, part)
        try:
            await pipe.execute()
            self.sent += len(buffer)
            if self._on_sent is not None:
                self._on_sent(len(buffer))
        except (RedisError, OSError) as error:  # the tap is best effort: a lost copy is no loss
            log.debug("tap: publish failed: %s", error)


def _arrays(messages: list[bytes]) -> Iterable[bytes]:
    """``messages`` (JSON objects) as JSON arrays of at most ``_MESSAGE_BYTES`` each."""
    part: list[bytes] = []
    size = 0
    for message in messages:
        if part and size + len(message) > _MESSAGE_BYTES:
            yield b"[" + b",".join(part) + b"]"
            part, size = [], 0
        part.append(message)
        size += len(message) + 1
    yield b"[" + b",".join(part) + b"]"
