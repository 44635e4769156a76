"""Request–reply through the mesh: Apache EventMesh's code 101 (``SendSyncMessageProcessor``).

A topic may have one *responder*: a subscription marked so in the portal (``"responder": true``
in the MeshConfig document). A request is an event published with code 101:

1. The publishing runtime gives the event two extensions, ``meshreplyto`` (a token of its own,
   so that nobody can answer another client's request by guessing an id) and ``meshreplyby``
   (the deadline, RFC 3339: the request's ``ttl`` from now, capped), starts listening for the
   token, stores the event like any other and waits.
2. The runtime delivering the responder's subscription (its delivery child, maybe on another
   host) POSTs the event to the responder's webhook as usual. A 2xx answer acknowledges it, and
   its body *is the reply*: :class:`ReplyPoster` pushes it to the list ``<prefix>reply:<token>``
   (expiring shortly after the deadline) and rings the channel ``<prefix>replies`` with the token.
   Answers after the deadline, and answers to routed copies, are dropped (and counted).
3. :class:`ReplyWaiter` (one subscription to that channel per publishing runtime, no blocked
   connection per request) wakes the request, which takes the reply from the list. A doorbell
   lost to a reconnect costs time, not the reply: the list is read again at the deadline.

The client gets retCode 0 and ``retMsg`` = the JSON of EventMesh's ``ReplyMessage``
(``{"topic", "body", "properties"}``), which the Java SDK's ``request()`` parses; at the deadline,
EventMesh's ``EVENTMESH_WAITING_RR_MSG_ERR`` (4). The event stays stored and delivered either way.

The Redis names below are the only ones this feature uses; they belong with the other key names
(``meshruntime.keys``) once that module exists.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .cloudevents import loads
from .keys import KeySpace
from .state import ROUTE_EXTENSION

__all__ = [
    "REPLY_BY_EXTENSION",
    "REPLY_TO_EXTENSION",
    "Reply",
    "ReplyPoster",
    "ReplyWaiter",
]

log = logging.getLogger(__name__)

REPLY_TO_EXTENSION = "meshreplyto"
REPLY_BY_EXTENSION = "meshreplyby"
MAX_REPLY_BYTES = 1024 * 1024  # the webhook client reads no more of an answer (delivery.http1)
KEEP_AFTER_DEADLINE_MS = 5_000  # a reply's list outlives the deadline by this much, then expires




@dataclass(frozen=True, slots=True)
class Reply:
    """What the responder answered (or, with ``error``, why there is no usable answer)."""

    subscription: str
    status: int
    content_type: str | None
    body: bytes
    error: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps({"subscription": self.subscription, "status": self.status,
                             "content_type": self.content_type, "error": self.error,
                             "body": base64.b64encode(self.body).decode("ascii")})

    @classmethod
    def decode(cls, raw: bytes) -> Reply:
        value = orjson.loads(raw)
        return cls(value["subscription"], value["status"], value["content_type"],
                   base64.b64decode(value["body"]), value.get("error"))


def deadline_text(epoch_s: float) -> str:
    """``meshreplyby``: RFC 3339 UTC with milliseconds (what a responder can read at a glance)."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _deadline_epoch(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return None


class ReplyPoster:
    """The delivering side: hands a responder's 2xx answer to the waiting runtime.

    :meth:`offer` is called from the delivery engine's answer callback, so it only queues; one
    task writes what has queued (``RPUSH`` + ``PEXPIRE`` + ``PUBLISH`` per reply, one round trip).
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.keys = KeySpace(prefix)
        self.posted = 0
        self.dropped: dict[str, int] = {}  # why an answer was not posted -> how many
        self._queue: list[tuple[str, bytes, int]] = []
        self._writer: asyncio.Task | None = None

    def offer(self, stored_event: bytes, subscription: str, status: int, content_type: str | None,
              body: bytes) -> None:
        """A responder's subscription answered 2xx to ``stored_event`` (the event as stored)."""
        if b'"' + REPLY_TO_EXTENSION.encode() + b'"' not in stored_event:
            return  # not a request: the usual case, decided without parsing the event
        try:
            attributes = loads(stored_event)
            token = attributes[REPLY_TO_EXTENSION]
            deadline = _deadline_epoch(attributes.get(REPLY_BY_EXTENSION))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if ROUTE_EXTENSION in attributes:
            self._drop("routed copy")  # a copy in another topic: only the topic's own responder answers
            return
        if not isinstance(token, str) or deadline is None:
            self._drop("malformed request")
            return
        remaining_ms = int((deadline - time.time()) * 1000)
        if remaining_ms <= 0:
            self._drop("after the deadline")
            return
        error = None
        if len(body) >= MAX_REPLY_BYTES:
            error = f"the responder's answer is {MAX_REPLY_BYTES} bytes or more; replies must be shorter"
            body = b""
        reply = Reply(subscription, status, content_type, body, error)
        self._queue.append((token, reply.encode(), remaining_ms + KEEP_AFTER_DEADLINE_MS))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    def _drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1

    async def _write(self) -> None:
        channel = self.keys.replies
        while self._queue:
            batch, self._queue = self._queue, []
            pipe = self.client.pipeline(transaction=False)
            for token, value, ttl_ms in batch:
                key = self.keys.reply(token)
                pipe.rpush(key, value)
                pipe.pexpire(key, ttl_ms)
                pipe.publish(channel, token)
            try:
                await pipe.execute()
                self.posted += len(batch)
            except (RedisError, OSError) as error:
                # The requests time out (retCode 4); the events were delivered and stay acknowledged.
                log.warning("%d replies not posted: %s", len(batch), error)
                self.dropped["redis unavailable"] = self.dropped.get("redis unavailable", 0) + len(batch)

    async def drain(self) -> None:
        while self._writer is not None and not self._writer.done():
            await asyncio.gather(self._writer, return_exceptions=True)


class ReplyWaiter:
    """The publishing side: one channel subscription, and a future per request in flight."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.keys = KeySpace(prefix)
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._pubsub: aioredis.client.PubSub | None = None
        self._listener: asyncio.Task | None = None
        self._starting: asyncio.Lock = asyncio.Lock()
        self._closing = False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def start(self) -> None:
        """Subscribe (once; later calls return at once) and wait until Redis confirms, so that no
        reply to a request published afterwards can ring before anyone listens."""
        async with self._starting:
            if self._listener is not None:
                return
            pubsub = self.client.pubsub()
            await pubsub.subscribe(self.keys.replies)
            async with asyncio.timeout(5):
                while (message := await pubsub.get_message(timeout=1.0)) is None or message["type"] != "subscribe":
                    pass
            self._pubsub = pubsub
            self._listener = asyncio.create_task(self._listen(), name="reply-listener")

    def expect(self) -> str:
        """A new token to put on a request (``meshreplyto``); call :meth:`wait` with it."""
        token = uuid.uuid4().hex
        self._waiting[token] = asyncio.get_running_loop().create_future()
        return token

    async def wait(self, token: str, timeout_s: float) -> Reply | None:
        """The reply to the request carrying ``token``, or None at ``timeout_s``."""
        doorbell = self._waiting.get(token)
        key = self.keys.reply(token)
        try:
            if doorbell is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(doorbell, timeout_s)
            raw = await self.client.lpop(key)  # after the doorbell, or at the deadline (a lost doorbell)
            return Reply.decode(raw) if raw is not None else None
        finally:
            self._waiting.pop(token, None)

    def forget(self, token: str) -> None:
        """The request was not published after all (refused): stop expecting its reply."""
        self._waiting.pop(token, None)

    async def _listen(self) -> None:
        assert self._pubsub is not None
        failures = 0
        while not self._closing:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                failures = 0
            except (RedisError, OSError) as error:  # redis-py reconnects and subscribes again
                failures += 1
                if failures == 1:
                    log.warning("reply channel: %s; replies are read at their deadline until it is back", error)
                await asyncio.sleep(min(0.1 * failures, 2.0))
                continue
            if message is None:
                continue
            data = message["data"]
            future = self._waiting.get(data.decode() if isinstance(data, bytes) else str(data))
            if future is not None and not future.done():
                future.set_result(None)

    async def stop(self) -> None:
        """Wake every request still waiting (each reads its list once more and answers)."""
        self._closing = True
        for future in self._waiting.values():
            if not future.done():
                future.set_result(None)
        if self._listener is not None:
            # cancelled so as not to wait out its read; should redis-py swallow the cancellation
            # (it may, inside a command), the loop sees _closing within its one-second read
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
            self._pubsub = None
