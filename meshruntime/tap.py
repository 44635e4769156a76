"""The live tap: copies of events and refusals, sent only while someone watches.

The portal sets ``<prefix>tap:watch:<topic>`` (with a TTL it keeps renewing) while a person
looks at a topic's live view, and a refusals watch key per scope (every refusal, one topic's, one
application's: see :class:`~meshruntime.keys.KeySpace`) while a person looks at a refusals panel.
The runtime checks which are watched once a second (MGETs of every key, off the publish path)
and keeps the answer in sets; for every other topic the tap costs one set lookup per publish.

Copies are sent after the append, gathered for ``flush_interval`` (10 ms) and sent in one
pipeline, the copies for one channel in one message (``meshruntime.tapwire``: a header with
their sizes, then the copies). A Redis round trip costs the runtime more than a dozen copies do,
and the portal reads one message instead of one per event, decoding only the copies it shows.
One flush is under way at a time; what arrives meanwhile waits in a buffer of at most
``max_buffer_bytes`` (8 MiB). Beyond it, and when Redis refuses a send, copies are dropped and
counted, and the next message on the channel says how many (``dropped``): a viewer is told what
it missed, the publisher never waits for a viewer.

A copy of a stored event is cheap: the event as stored (the JSON the append wrote) is embedded
as it is, with the topic, application, stream id, rule, runtime and time around it, so the data
is whole up to ``data_limit`` bytes of event and nothing is serialized twice. An event larger
than that, and a refused event, is sent as :func:`compact` makes it: the attributes, the data up
to ``data_limit`` bytes (larger data is cut there and marked truncated) and the data's size.
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
from .state import ROUTE_EXTENSION
from .store.resp import RespPool, command
from .tapwire import encode

log = logging.getLogger(__name__)

__all__ = ["BUFFER_BYTES", "DATA_LIMIT", "Tap", "compact"]

#: Bytes of an event's data that a tap copy carries (``--tap-data-limit``). Above it the copy
#: carries the first bytes and ``data_truncated``. Large enough for the payloads people read in a
#: browser; small enough that a tap message stays cheap for the runtime and for Redis.
DATA_LIMIT = 64 * 1024
#: Bytes of copies the tap holds while a flush is under way (``max_buffer_bytes``); beyond them
#: copies are dropped and counted until the flush is done.
BUFFER_BYTES = 8 << 20
_MGET_CHUNK = 1000
#: A tap message stays below this many bytes of copies; a larger flush sends several.
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
        max_buffer_bytes: int = BUFFER_BYTES,
        resp: RespPool | None = None,
        on_sent: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        # Copies go out on raw pipelined connections (see store/resp.py), the append path's
        # own: redis-py's pipeline cost the runtime more per flush than the copies it carried.
        # The tap owns them (closed by stop()); without, through ``client``'s pipeline.
        self.resp = resp
        self.prefix = prefix
        self.keys = KeySpace(prefix)
        self.runtime_id = runtime_id
        self.interval = interval
        self.data_limit = data_limit
        self.flush_interval = flush_interval
        self.max_buffer_bytes = max_buffer_bytes
        self._topics = topics
        self._applications = applications
        #: topics whose events are watched
        self.watched: frozenset[str] = frozenset()
        #: which refusals are watched: all of them, those on these topics, those of these applications
        self.refusals_all = False
        self.refusal_topics: frozenset[str] = frozenset()
        self.refusal_applications: frozenset[str] = frozenset()
        self._channels: dict[str, str] = {}  # topic -> its tap channel
        self._heads: dict[tuple[str, str, str | None], bytes] = {}  # see _head
        self._buffer: dict[str, list[bytes]] = {}  # channel -> copies waiting for the next flush
        self._buffered = 0  # bytes in _buffer
        self._dropped: dict[str, int] = {}  # channel -> copies dropped since its last message
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task | None = None
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        #: copies sent, and copies dropped (buffer full, or Redis refused the send)
        self.sent = 0
        self.dropped = 0
        self._on_sent = on_sent
        self._on_dropped = on_dropped

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
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._flush()  # what is left, now rather than at the timer
        if self.resp is not None:
            await self.resp.close()

    # -- sending --------------------------------------------------------------------------------
    def offer_stored(self, topic: str, event: CloudEvent, body: bytes, *, application: str, stream_id: str,
                     rule: str | None = None) -> None:
        """Send a copy of an event stored on ``topic`` (the caller checks ``in tap.watched``
        first): ``body`` is what was stored, ``event`` the event published (``rule``: the routing
        rule that wrote this copy, whose extension ``body`` carries)."""
        if self._buffered >= self.max_buffer_bytes:
            self._drop(self._channel(topic))
            return
        if len(body) > self.data_limit:
            if rule is None:
                self.offer(topic, event, "stored", application=application, stream_id=stream_id)
            else:  # the copy a routing rule wrote: the event with the rule's extension
                self.offer(topic, event.with_extension(ROUTE_EXTENSION, rule), "stored", application=application,
                           stream_id=stream_id, rule=rule)
            return
        head = self._heads.get((topic, application, rule))
        if head is None:
            head = self._head(topic, application, rule)
        # Built by formatting, not by orjson: a bytes object orjson made and the buffer keeps
        # costs several times the serializing (its allocation is sized for the worst case)
        self._send(self._channel(topic), b'%s%s,"at":%d,"event":%s}' % (
            head, orjson.dumps(stream_id), int(time.time() * 1000), body))

    def _head(self, topic: str, application: str, rule: str | None) -> bytes:
        """What the copies of one (topic, application, rule) start with, up to the stream id."""
        if len(self._heads) > 10_000:  # topics and applications come and go with configurations
            self._heads.clear()
        fields = {"topic": topic, "outcome": "stored", "application": application}
        if rule is not None:
            fields["rule"] = rule
        fields["runtime"] = self.runtime_id
        head = self._heads[topic, application, rule] = orjson.dumps(fields)[:-1] + b',"stream_id":'
        return head

    def offer(self, topic: str, event: CloudEvent, outcome: str, **fields: Any) -> None:
        """Send a copy as :func:`compact` makes it if ``topic`` is watched (the caller checks ``in
        tap.watched`` first): a refused event, or a stored one larger than ``data_limit``."""
        if self._buffered >= self.max_buffer_bytes:
            self._drop(self._channel(topic))
            return
        message = compact(event, data_limit=self.data_limit)
        message.update(topic=topic, outcome=outcome, runtime=self.runtime_id, at=int(time.time() * 1000))
        message.update(fields)
        self._send(self._channel(topic), orjson.dumps(message))

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
            if self._buffered >= self.max_buffer_bytes:
                self._drop(channel)
            else:
                self._send(channel, message)

    def _channel(self, topic: str) -> str:
        channel = self._channels.get(topic)
        if channel is None:
            if len(self._channels) > 10_000:  # topics come and go with configurations
                self._channels.clear()
            channel = self._channels[topic] = self.keys.tap(topic)
        return channel

    def _send(self, channel: str, message: bytes) -> None:
        copies = self._buffer.get(channel)
        if copies is None:
            copies = self._buffer[channel] = []
        copies.append(message)
        self._buffered += len(message)
        if self._timer is None and self._flushing is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_interval, self._start_flush)

    def _drop(self, channel: str, n: int = 1) -> None:
        self._dropped[channel] = self._dropped.get(channel, 0) + n
        self.dropped += n
        if self._on_dropped is not None:
            self._on_dropped(n)
        if self._timer is None and self._flushing is None:  # the count goes out even if nothing else does
            self._timer = asyncio.get_running_loop().call_later(self.flush_interval, self._start_flush)

    def _start_flush(self) -> None:
        self._timer = None
        self._flushing = asyncio.get_running_loop().create_task(self._flush(), name="tap-flush")
        self._flushing.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task) -> None:
        self._flushing = None
        if (self._buffer or self._dropped) and self._timer is None and not task.cancelled():
            # what came during the round trip; after a failure, only the count: retry it later
            delay = self.flush_interval if self._buffer else self.interval
            self._timer = asyncio.get_running_loop().call_later(delay, self._start_flush)

    async def _flush(self) -> None:
        buffer, self._buffer, self._buffered = self._buffer, {}, 0
        dropped, self._dropped = self._dropped, {}
        if not buffer and not dropped:
            return
        publishes = [(channel.encode(), message) for channel in buffer.keys() | dropped.keys()
                     for message in encode(buffer.get(channel, ()), dropped.get(channel, 0), max_bytes=_MESSAGE_BYTES)]
        try:
            if self.resp is not None:
                payload = b"".join(command(b"PUBLISH", channel, message) for channel, message in publishes)
                await self.resp.request(payload, len(publishes))
            else:
                pipe = self.client.pipeline(transaction=False)
                for channel, message in publishes:
                    pipe.publish(channel, message)
                await pipe.execute()
        except (RedisError, OSError) as error:  # the tap is best effort: counted, said, never waited for
            log.debug("tap: publish failed: %s", error)
            for channel in buffer.keys() | dropped.keys():
                lost = len(buffer.get(channel, ()))
                if lost:
                    self._drop(channel, lost)
                self._dropped[channel] = self._dropped.get(channel, 0) + dropped.get(channel, 0)
            return
        sent = sum(len(copies) for copies in buffer.values())
        self.sent += sent
        if self._on_sent is not None and sent:
            self._on_sent(sent)
