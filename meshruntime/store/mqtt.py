"""MQTT (``mqtt://[user:password@]host:port[/root]``): a transport at the edge, not an event store.

An MQTT broker keeps no history to read back, no consumer groups, no positions and no dead
letters, so a mesh topic cannot *live* on it; what devices need from the mesh is two doors:

- *ingest*: devices publish to ``<root>/<topic as a/b/c>`` with QoS 1; the runtime subscribes
  with a persistent session (the broker queues what arrives while it is away) and acknowledges
  each message only after it has dealt with it (appended to the topic's store, or refused), so
  a crash in between gets the message again rather than losing it;
- *deliver*: an event appended to a topic on an MQTT store, or a subscription that delivers to
  MQTT, is published to the same tree with QoS 1, and counts as done once the broker has
  acknowledged it (``PUBACK``).

So :class:`MqttStore` implements the publishing half of :class:`~.base.Store` and raises
:class:`~.base.StoreUnsupported` for the rest (groups, reads, dead letters, retention).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

import aiomqtt

from meshruntime.keys import DEFAULT_PREFIX

from . import names
from .base import (
    GROUP_START_NEW,
    AppendEntry,
    DeadLetter,
    GroupInfo,
    Journal,
    JourneyStep,
    Retention,
    StoredEntry,
    StoreError,
    StoreUnsupported,
    redact,
)
from .engine import JournalledStore, split_url

log = logging.getLogger(__name__)

QOS = 1
_ERRORS = (aiomqtt.MqttError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True, slots=True)
class IngestedMessage:
    """A message a device published: ``topic`` is the mesh topic, None when its MQTT topic names
    none (it must still be acknowledged, as refused)."""

    topic: str | None
    mqtt_topic: str
    payload: bytes
    mid: int


class MqttStore(JournalledStore):
    kind = "mqtt"
    durable = False

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, name: str = "default", journal: Journal | None = None,
                 connect_timeout_s: float = 5.0, **_ignored) -> None:
        parts = split_url(url, name, ("mqtt",), "an mqtt://host:port[/root] URL")
        try:
            self.port = parts.port or 1883
        except ValueError as error:
            raise ValueError(f"event store {name!r}: {redact(url)!r} has an invalid port") from error
        self.host = parts.hostname
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.root = parts.path.strip("/") or "mesh"
        names.mqtt_topic(self.root, "check")  # a root with wildcards is refused here
        super().__init__(prefix=prefix, name=name, where=f"{self.host}:{self.port}", journal=journal,
                         connect_timeout_s=connect_timeout_s)
        self._publisher: aiomqtt.Client | None = None
        self._connecting = asyncio.Lock()

    def _client(self, **kwargs) -> aiomqtt.Client:
        return aiomqtt.Client(self.host, self.port, username=self.username, password=self.password,
                              timeout=self.connect_timeout_s, **kwargs)

    async def connect(self) -> None:
        await self._connected()

    async def _connected(self) -> aiomqtt.Client:
        async with self._connecting:
            if self._publisher is None:
                client = self._client()
                try:
                    await client.__aenter__()
                except _ERRORS as error:
                    raise StoreError(f"{self.label} cannot be reached: {error}") from error
                self._publisher = client
            return self._publisher

    # -- deliver ---------------------------------------------------------------------------------
    async def append_many(self, entries: Sequence[AppendEntry], *, journey: Sequence[JourneyStep] = ()) -> list[str]:
        """Publish each event with QoS 1, in order; returns once the broker acknowledged them all.
        MQTT gives no position: the ids are empty strings."""
        client = await self._connected()
        try:
            await asyncio.gather(*(client.publish(names.mqtt_topic(self.root, e.topic), e.event, qos=QOS)
                                   for e in entries))
        except _ERRORS as error:
            await self._drop_publisher()
            raise StoreError(f"{self.label}: publish failed: {error}") from error
        if journey:
            await self.record_journey(journey)
        return [""] * len(entries)

    async def publish(self, mqtt_topic: str, payload: bytes) -> None:
        """Publish one message to an MQTT topic of the broker as it is named there (a delivery
        target, ``mqtt://<store>/<topic>``), with QoS 1; returns once the broker acknowledged it."""
        if not mqtt_topic or "+" in mqtt_topic or "#" in mqtt_topic:
            raise ValueError(f"{mqtt_topic!r} is not an MQTT topic to publish to (no wildcards, not empty)")
        client = await self._connected()
        try:
            await client.publish(mqtt_topic, payload, qos=QOS)
        except _ERRORS as error:
            await self._drop_publisher()
            raise StoreError(f"{self.label}: publish to {mqtt_topic} failed: {error}") from error

    async def _drop_publisher(self) -> None:
        client, self._publisher = self._publisher, None
        if client is not None:
            with contextlib.suppress(*_ERRORS, RuntimeError):
                await client.__aexit__(None, None, None)

    # -- ingest ----------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def ingest(self, topics: Sequence[str], *, session: str) -> AsyncIterator[MqttIngest]:
        """Subscribe to mesh topics (``*`` and ``prefix.*`` patterns too) under a persistent
        session named ``session``: one per runtime, the same across its restarts."""
        client = self._client(identifier=f"{names.prefix_token(self.prefix)}-{self.name}-{session}",
                              clean_session=False)
        # paho (under aiomqtt) acknowledges a message when it is handed over, unless told not to:
        # the ingest acknowledges after the runtime has dealt with it
        client._client.manual_ack_set(True)
        try:
            await client.__aenter__()
        except _ERRORS as error:
            raise StoreError(f"{self.label} cannot be reached: {error}") from error
        try:
            for topic in topics:
                await client.subscribe(names.mqtt_filter(self.root, topic), qos=QOS)
            yield MqttIngest(self, client)
        except _ERRORS as error:
            raise StoreError(f"{self.label}: ingest failed: {error}") from error
        finally:
            with contextlib.suppress(*_ERRORS, RuntimeError):
                await client.__aexit__(None, None, None)

    # -- what MQTT does not keep -----------------------------------------------------------------
    def _unsupported(self, what: str) -> StoreUnsupported:
        return StoreUnsupported(f"{self.label} is a transport and keeps no events: it cannot {what} "
                                "(put the topic on a Redis, Kafka or NATS store; see docs/stores.md)")

    async def ensure_group(self, topic: str, group: str, start: str | int = GROUP_START_NEW) -> bool:
        raise self._unsupported("hold consumer groups")

    async def remove_group(self, topic: str, group: str) -> bool:
        raise self._unsupported("hold consumer groups")

    def consumer(self, topic: str, group: str, name: str):
        raise self._unsupported("hold consumer groups")

    async def group_info(self, topic: str, group: str) -> GroupInfo | None:
        raise self._unsupported("report lag")

    async def read_range(self, topic: str, **_bounds) -> list[StoredEntry]:
        raise self._unsupported("read events back")

    async def dead_letters(self, group: str, *, count: int = 50, before: str | None = None) -> list[DeadLetter]:
        raise self._unsupported("keep dead letters")

    async def redeliver(self, group: str, ids: Sequence[str] | None, *, by: str) -> int:
        raise self._unsupported("keep dead letters")

    async def trim(self, topic: str, retention: Retention) -> int:
        return 0  # nothing is kept, so nothing is over any limit

    async def length(self, topic: str) -> int:
        raise self._unsupported("count events")

    async def ping(self) -> bool:
        try:
            await self._connected()
            return True
        except StoreError:
            return False

    async def close(self) -> None:
        await self._drop_publisher()


class MqttIngest:
    """The messages of an ingest session, each to be acknowledged once dealt with."""

    def __init__(self, store: MqttStore, client: aiomqtt.Client) -> None:
        self.store = store
        self._client = client

    async def __aiter__(self) -> AsyncIterator[IngestedMessage]:
        try:
            async for message in self._client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                yield IngestedMessage(names.mesh_topic_of_mqtt(self.store.root, message.topic.value),
                                      message.topic.value, payload, message.mid)
        except _ERRORS as error:
            raise StoreError(f"{self.store.label}: ingest failed: {error}") from error

    def ack(self, message: IngestedMessage) -> None:
        """``PUBACK``: the broker forgets the message. In the order the messages came (MQTT asks
        for that), which a runtime dealing with them one after another does by itself."""
        self._client._client.ack(message.mid, QOS)
