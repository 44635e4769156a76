"""Devices publish into the mesh through an MQTT broker: the runtime's MQTT ingest.

``--mqtt-ingest STORE[=APPLICATION]`` makes a runtime subscribe to the broker of the catalog's
MQTT store ``STORE`` (its connection, as for any store, from ``--store``): a device publishes
with QoS 1 to ``<root>/<mesh topic as a/b/c>`` (``mesh/sensors/temperature`` for
``sensors.temperature``), and the runtime publishes what it gets as ``APPLICATION`` (a sidecar's
own application by default) through the very checks of an HTTP publish: the topic exists, the
access rules let the application publish there, the event fits the size limit and the topic's
schema, routing rules add their copies; then it is appended to the topic's store.

A payload that is a structured CloudEvent (JSON with ``specversion``) is taken as it is; any
other payload becomes the ``data`` of a new CloudEvent (JSON data as JSON, anything else as
bytes), with ``source`` the MQTT topic (``mqtt://<store>/<mqtt topic>``) and ``type``
``mqtt.message``, so that a device needs no CloudEvents library.

Each message is acknowledged to the broker (``PUBACK``) only once it is dealt with: stored, or
refused for good (its topic, its access, its schema; logged and counted as refusals, with a
journey ``denied`` step like any refused publish). A store that cannot take it now (503) is
retried, in order, until it can or the runtime stops; an unacknowledged message is what the
broker sends again to the runtime's persistent session when it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

from .cloudevents import CloudEvent, EventError, loads, parse_structured
from .publish import Publisher, Refusal
from .state import Identity, MeshState
from .store import StoreError

if TYPE_CHECKING:
    from .store.mqtt import IngestedMessage, MqttStore

log = logging.getLogger(__name__)

__all__ = ["MqttIngestor", "event_from_mqtt", "parse_ingest"]

MESSAGE_TYPE = "mqtt.message"
_RETRY_MAX_S = 5.0


def parse_ingest(value: str) -> tuple[str, str | None]:
    """``STORE`` or ``STORE=APPLICATION`` (the value of ``--mqtt-ingest``)."""
    store, _, application = value.partition("=")
    store, application = store.strip(), application.strip()
    if not store:
        raise ValueError(f"--mqtt-ingest: {value!r} is not STORE[=APPLICATION]")
    return store, application or None


def event_from_mqtt(store: str, mqtt_topic: str, payload: bytes) -> CloudEvent:
    """The CloudEvent a device's message stands for (see the module's docstring)."""
    stripped = payload.lstrip()
    if stripped.startswith(b"{"):
        try:
            value = loads(payload)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict) and "specversion" in value:
            return parse_structured(payload)  # raises EventError, naming what is wrong
    attributes = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"mqtt://{store}/{mqtt_topic}",
                  "type": MESSAGE_TYPE, "time": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
    try:
        data = loads(payload)
    except orjson.JSONDecodeError:
        attributes["datacontenttype"] = "application/octet-stream"
        return CloudEvent(attributes, payload)
    attributes["datacontenttype"] = "application/json"
    return CloudEvent(attributes, data, raw_json=payload)


class MqttIngestor:
    """One MQTT store's ingest for a runtime: a background task from :meth:`start` to :meth:`stop`."""

    def __init__(self, *, store_name: str, application: str, publisher: Publisher, session: str,
                 state: Callable[[], MeshState | None], engine: Callable[[], MqttStore | None]) -> None:
        """``state()`` is the runtime's applied configuration (None before one), ``engine()`` the
        :class:`~meshruntime.store.mqtt.MqttStore` of ``store_name`` (None while the configuration
        does not name it, or the runtime has no connection for it)."""
        self.store_name = store_name
        self.application = application
        self.publisher = publisher
        self.session = session
        self._state = state
        self._engine = engine
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self.ingested = 0
        self.refused = 0
        self.error: str | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mqtt-ingest-{self.store_name}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        delay = 0.2
        while not self._stopping.is_set():
            engine: MqttStore | None = self._engine()
            if engine is None or self._state() is None:
                self._set_error(f"MQTT store {self.store_name!r} is not usable here (not in the configuration, "
                                "or no connection for it)")
                await self._pause(1.0)
                continue
            try:
                async with engine.ingest(["*"], session=self.session) as ingest:
                    log.info("MQTT ingest from %s as %s", engine.label, self.application)
                    self.error, delay = None, 0.2
                    async for message in ingest:
                        if not await self._handle(message):
                            return  # stopping: not acknowledged, the broker sends it again
                        ingest.ack(message)
            except StoreError as error:
                self._set_error(str(error))
                await self._pause(delay)
                delay = min(delay * 2, _RETRY_MAX_S)

    async def _handle(self, message: IngestedMessage) -> bool:
        """Store the message's event, or refuse it for good: True, to be acknowledged. Retried
        while its store cannot take it (503); False when the runtime stops meanwhile."""
        delay = 0.1
        while not self._stopping.is_set():
            state: MeshState | None = self._state()
            try:
                await self._publish(state, message)
                self.ingested += 1
                return True
            except Refusal as refusal:
                if refusal.status != 503:
                    self.refused += 1
                    log.warning("MQTT message on %s refused (%s): %s", message.mqtt_topic, refusal.reason,
                                refusal.message)
                    return True
                self._set_error(f"MQTT message on {message.mqtt_topic} not stored yet: {refusal.message}")
            await self._pause(delay)
            delay = min(delay * 2, _RETRY_MAX_S)
        return False

    async def _publish(self, state: MeshState | None, message: IngestedMessage) -> None:
        if state is None:
            raise Refusal(503, "not_ready", "no configuration applied yet")
        if message.topic is None:
            raise self.publisher.refuse(Refusal(404, "unknown_topic", f"the MQTT topic {message.mqtt_topic!r} names "
                                                "no mesh topic (<root>/<topic levels>, a valid topic name)"))
        try:
            event = event_from_mqtt(self.store_name, message.mqtt_topic, message.payload)
        except EventError as error:
            raise self.publisher.refuse(Refusal(400, "invalid_event", str(error))) from None
        identity = Identity(self.application, state.applications.get(self.application), "mqtt")
        await self.publisher.publish(state, identity, message.topic, [event])

    def _set_error(self, error: str) -> None:
        if error != self.error:
            log.warning("%s", error)
        self.error = error

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
