"""One Redis subscription per watched channel per portal process, shared by all its viewers.

The runtimes tap a topic (or a scope of refusals) only while its watch key exists
(``meshruntime.tap``). A portal process that has viewers of a channel subscribes to it once,
however many viewers it has, sets the watch key with a TTL and renews it while at least one
viewer remains; several processes (uvicorn workers) each do the same, so the key lives as long
as any of them has a viewer. When a process's last viewer of a channel leaves it unsubscribes
after a short grace (a page reload keeps the subscription) and stops renewing: the key expires
within seconds of the last viewer anywhere leaving, and the runtimes stop tapping.

The fan-out stays in the process: each message (the copies a runtime gathered in 10 ms,
``meshruntime.tapwire``) is read once and handed to every local viewer, which filters, limits
and masks for its own user. A copy is decoded only when a viewer needs it (to filter, or to
show it), and once for all of them. Going through a channel-layer group instead would write
each copy into Redis again once per viewer, and several processes would each deliver what they
received to every member of the group, so each viewer would see every copy once per process;
the channel layer carries the low-rate messages that cross processes (``tracing.signals``:
access changed) instead.

A channel keeps its last few messages' items (``keep``) while subscribed, so that a panel
opened a moment after a refusal still shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import RedisError

from meshruntime.tapwire import TapMessage, TapMessageError, decode

log = logging.getLogger(__name__)

__all__ = ["Sink", "Stream", "WatchHub", "close_hub", "hub"]

#: Receives one message (its copies decoded on demand); called in the hub's task, so it must not block.
Sink = Callable[[TapMessage], None]


@dataclass(frozen=True, slots=True)
class Stream:
    """What a viewer watches: the channel the runtimes send on and the key that makes them send."""

    channel: str
    watch_key: str
    keep: int = 0  #: items kept for viewers that arrive later (0: none)


@dataclass(eq=False)
class _Channel:
    stream: Stream
    sinks: set[Sink] = field(default_factory=set)
    recent: deque = field(default_factory=deque)
    teardown: asyncio.TimerHandle | None = None


class WatchHub:
    """The subscriptions and watch keys of one portal process (one event loop)."""

    def __init__(self, redis_url: str, *, ttl: float, grace: float) -> None:
        self.client = aioredis.Redis.from_url(redis_url, health_check_interval=30)
        self.ttl = ttl
        self.grace = grace
        self._pubsub = self.client.pubsub(push_handler_func=_as_received)
        self._channels: dict[str, _Channel] = {}
        self._reader: asyncio.Task | None = None
        self._renewer: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

    # -- viewers come and go --------------------------------------------------------------------
    async def watch(self, stream: Stream, sink: Sink) -> list[Any]:
        """Start delivering ``stream``'s items to ``sink``; returns the items kept so far."""
        async with self._lock:
            channel = self._channels.get(stream.channel)
            if channel is None:  # Redis errors propagate: the page's socket closes and reconnects
                await self._pubsub.subscribe(stream.channel)
                await self.client.set(stream.watch_key, "1", ex=self._ttl_seconds)
                channel = self._channels[stream.channel] = _Channel(stream, recent=deque(maxlen=stream.keep))
            elif channel.teardown is not None:
                channel.teardown.cancel()
                channel.teardown = None
            channel.sinks.add(sink)
            self._start_tasks()
            return list(channel.recent)

    async def unwatch(self, stream: Stream, sink: Sink) -> None:
        """Stop delivering to ``sink``; the channel goes after the grace if nobody else watches."""
        channel = self._channels.get(stream.channel)
        if channel is None:
            return
        channel.sinks.discard(sink)
        if channel.sinks or channel.teardown is not None:
            return
        if self.grace > 0:
            channel.teardown = asyncio.get_running_loop().call_later(self.grace, self._spawn_teardown, channel)
        else:
            await self._teardown(channel)

    def watching(self, channel: str) -> int:
        """How many local viewers ``channel`` has (tests, the benchmark)."""
        found = self._channels.get(channel)
        return len(found.sinks) if found is not None else 0

    def _spawn_teardown(self, channel: _Channel) -> None:
        task = asyncio.get_running_loop().create_task(self._teardown(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _teardown(self, channel: _Channel) -> None:
        async with self._lock:
            channel.teardown = None
            name = channel.stream.channel
            if channel.sinks or self._channels.get(name) is not channel:
                return  # someone came back meanwhile
            del self._channels[name]
            try:
                await self._pubsub.unsubscribe(name)
            except (RedisError, OSError) as error:
                log.warning("tap: cannot unsubscribe from %s: %s", name, error)

    # -- the two tasks --------------------------------------------------------------------------
    @property
    def _ttl_seconds(self) -> int:
        return max(1, round(self.ttl))

    def _start_tasks(self) -> None:
        loop = asyncio.get_running_loop()
        if self._reader is None or self._reader.done():
            self._reader = loop.create_task(self._read(), name="tracing-hub-read")
        if self._renewer is None or self._renewer.done():
            self._renewer = loop.create_task(self._renew(), name="tracing-hub-renew")

    async def _read(self) -> None:
        delay = 0.1
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (RedisError, OSError) as error:
                log.warning("tap: reading the subscriptions failed (%s); retrying in %.1f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            if message is None or message.get("type") != "message":
                continue
            self._dispatch(message["channel"].decode(), message["data"])

    def _dispatch(self, name: str, data: bytes) -> None:
        channel = self._channels.get(name)
        if channel is None:
            return
        try:
            message = decode(data)
        except TapMessageError as error:
            log.warning("tap: a message on %s is not a tap message (%s); ignored", name, error)
            return
        if channel.stream.keep:
            channel.recent.extend(message.items())
        for sink in list(channel.sinks):
            try:
                sink(message)
            except Exception:  # one viewer's bug must not stop the others' tail
                log.exception("tap: a viewer of %s failed", name)

    async def _renew(self) -> None:
        """Keep the watch key of every channel with a viewer (or in its grace) alive."""
        interval = max(0.2, self.ttl / 3)
        while True:
            await asyncio.sleep(interval)
            keys = [c.stream.watch_key for c in self._channels.values()]
            if not keys:
                continue
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.set(key, "1", ex=self._ttl_seconds)
            try:
                await pipe.execute()
            except (RedisError, OSError) as error:
                log.warning("tap: cannot renew %d watch keys: %s", len(keys), error)

    async def close(self) -> None:
        for task in (self._reader, self._renewer, *self._tasks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for channel in self._channels.values():
            if channel.teardown is not None:
                channel.teardown.cancel()
        self._channels.clear()
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()
        await self.client.aclose()


async def _as_received(response: Any) -> Any:
    """The PubSub's handler of what Redis pushes: the message as it came. (redis-py's own logs
    it at DEBUG level, formatting the whole message into the log line first, whatever the level:
    a copy of every tap message as text.)"""
    return response


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WatchHub] = weakref.WeakKeyDictionary()


def hub() -> WatchHub:
    """The hub of the running event loop (a portal process has one loop; a test has one per test)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = WatchHub(settings.REDIS_URL, ttl=settings.MESH_TAP_WATCH_TTL,
                                       grace=settings.MESH_TAP_WATCH_GRACE)
    return found


async def close_hub() -> None:
    """Close the running loop's hub, if it has one (tests, before their loop closes)."""
    found = _hubs.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()
