"""An in-process runtime on 127.0.0.1 with a real Redis, for the publish tests.

Use ``async with running_runtime(redis_url, key_prefix) as h:``; ``h.client`` is an aiohttp
client session bound to the runtime's port (``h.url``), ``h.stored(topic)`` reads the topic's
stream back. ``serving(runtime)`` serves a runtime that is set up some other way.

Every wait here has a deadline (``WAIT`` seconds) and fails naming what did not happen: starting,
stopping, a publish's answer, a configuration applied or refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import redis
from factories import key_for, make_config

from meshruntime.app import Runtime, Settings
from meshruntime.keys import KeySpace
from meshruntime.publish import Limits
from tests.portal_support.waiting import deadline

#: Seconds a wait on the runtime may take before the test fails naming it: far above what any takes
#: on a loaded machine, far below pytest-timeout's 300.
WAIT = 30.0


@dataclass
class Harness:
    runtime: Runtime
    client: aiohttp.ClientSession
    redis: redis.Redis
    prefix: str

    @property
    def keys(self) -> KeySpace:
        return KeySpace(self.prefix)

    @property
    def url(self) -> str:
        return str(self.client._base_url)  # noqa: SLF001 - the session's only record of it

    def stored(self, topic: str) -> list[dict[str, Any]]:
        """The events in a topic's stream, oldest first, as JSON objects."""
        rows = self.redis.xrange(self.keys.topic(topic))
        return [orjson.loads(fields[b"event"]) for _id, fields in rows]

    def stored_raw(self, topic: str) -> list[bytes]:
        return [fields[b"event"] for _id, fields in self.redis.xrange(self.keys.topic(topic))]

    def journey(self, event_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(s) for s in self.redis.lrange(self.keys.journey(event_id), 0, -1)]

    async def publish(self, topic: str, event: dict[str, Any], app: str = "billing", **kwargs):
        headers = {"Authorization": f"Bearer {key_for(app)}",
                   "Content-Type": "application/cloudevents+json", **kwargs.pop("headers", {})}
        async with deadline(WAIT, f"the runtime to answer a publish to {topic}"):
            return await self.client.post(f"/v1/topics/{topic}/events", data=orjson.dumps(event),
                                          headers=headers, **kwargs)

    async def publish_batch(self, topic: str, events: list[dict[str, Any]], app: str = "billing"):
        headers = {"Authorization": f"Bearer {key_for(app)}",
                   "Content-Type": "application/cloudevents-batch+json"}
        async with deadline(WAIT, f"the runtime to answer a batch publish to {topic}"):
            return await self.client.post(f"/v1/topics/{topic}/events", data=orjson.dumps(events),
                                          headers=headers)

    async def ready(self) -> dict[str, Any]:
        """The runtime's ``/readyz`` answer."""
        async with deadline(WAIT, "the runtime to answer /readyz"):
            return await (await self.client.get("/readyz")).json()

    async def config_applied(self, version: int, within: float = WAIT) -> None:
        """Wait until the runtime applies configuration ``version`` (or a later one)."""
        async with deadline(within, f"the runtime to apply configuration version {version}"):
            await self.runtime.wait_for_config(version, timeout=None)

    async def config_refused(self) -> None:
        """Wait until the runtime's watcher refuses a document."""
        watcher = self.runtime.watcher
        async with deadline(WAIT, "the runtime's watcher to refuse a document"):
            await watcher.wait_until(lambda: watcher.last_error is not None)


def event(i: int = 1, **overrides: Any) -> dict[str, Any]:
    """A valid structured event for orders.created (its schema needs order_id)."""
    return {"specversion": "1.0", "id": f"evt-{i}", "source": "/billing", "type": "com.example.order.created",
            "datacontenttype": "application/json", "data": {"order_id": f"o-{i}", "amount": 12.5},
            **overrides}


@contextlib.asynccontextmanager
async def running_runtime(
    redis_url: str, prefix: str, *, doc: dict[str, Any] | None = None, application: str | None = None,
    limits: Limits | None = None, apply: bool = True, store: Any = None, **settings: Any,
) -> AsyncIterator[Harness]:
    """A started runtime; ``apply=False`` leaves the configuration to its watcher or file."""
    settings.setdefault("runtime_id", "test-runtime")
    runtime = Runtime(Settings(store_url=redis_url, application=application, prefix=prefix,
                               limits=limits or Limits(), **settings), store=store)
    if apply:
        runtime.apply_config(doc or make_config())
    async with deadline(WAIT, "the runtime to start"):
        await runtime.start()
    sync = redis.Redis.from_url(redis_url)
    try:
        async with serving(runtime) as client:
            yield Harness(runtime, client, sync, prefix)
    finally:
        sync.close()
        async with deadline(WAIT, "the runtime to stop"):
            await runtime.stop()


@contextlib.asynccontextmanager
async def serving(runtime: Runtime) -> AsyncIterator[aiohttp.ClientSession]:
    """The runtime's HTTP server on a free port and a client session bound to it."""
    server = runtime.make_server()
    async with deadline(WAIT, "the runtime's HTTP server to listen"):
        host, port = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(base_url=f"http://{host}:{port}") as client:
            yield client
    finally:
        async with deadline(WAIT, "the runtime's HTTP server to shut down"):
            await server.shutdown()
