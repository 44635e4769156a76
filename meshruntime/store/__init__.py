"""Event stores behind one interface; see :mod:`meshruntime.store.base` and docs/stores.md."""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from meshruntime.keys import DEFAULT_PREFIX

from .base import (
    GROUP_START_ALL,
    GROUP_START_NEW,
    NO_RETENTION,
    AppendEntry,
    ClaimResult,
    DeadLetter,
    GroupConsumer,
    GroupInfo,
    Held,
    HeldLost,
    Journal,
    JourneyStep,
    PendingEntry,
    Retention,
    Store,
    StoredEntry,
    StoreError,
    StoreUnsupported,
    position_key,
    redact,
)
from .redis_streams import RedisStreamsStore

# URL schemes of each engine, and where it lives. The engines that are not Redis are imported
# when a URL of theirs is opened: their clients (aiokafka, nats-py, aiomqtt) take most of a
# second to import, which every runtime and test would pay whatever stores it uses.
ENGINES = {
    "redis": (("redis", "rediss", "unix"), "redis_streams:RedisStreamsStore"),
    "kafka": (("kafka",), "kafka:KafkaStore"),
    "nats": (("nats", "tls"), "nats_jetstream:NatsStore"),
    "mqtt": (("mqtt",), "mqtt:MqttStore"),
}


def engine_class(kind: str) -> type:
    """The class of an engine by kind (``redis``, ``kafka``, ``nats``, ``mqtt``)."""
    module, _, name = ENGINES[kind][1].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def open_store(url: str, *, prefix: str = DEFAULT_PREFIX, name: str = "default", journal: Journal | None = None,
               visibility_timeout_s: float = 30.0, **kwargs) -> Store:
    """The store for an event-store URL: ``redis://``, ``rediss://``, ``unix://`` (Redis Streams),
    ``kafka://``, ``nats://`` (JetStream) or ``mqtt://`` (a transport, see docs/stores.md).

    Nothing is connected yet (``await store.connect()`` does, and names the store when the server
    cannot be reached); a URL no engine takes, or one that is malformed, is a ValueError naming
    the store ``name``. ``journal`` receives journey steps on engines other than Redis.
    """
    try:
        scheme = urlsplit(url).scheme
    except ValueError as error:
        raise ValueError(f"event store {name!r}: {redact(url)!r} is not a URL ({error})") from None
    for kind, (schemes, _where) in ENGINES.items():
        if scheme in schemes:
            if kind == "redis":
                return RedisStreamsStore.from_url(url, prefix=prefix, name=name,
                                                  visibility_timeout_s=visibility_timeout_s, **kwargs)
            if kind == "mqtt":
                return engine_class(kind)(url, prefix=prefix, name=name, journal=journal, **kwargs)
            return engine_class(kind)(url, prefix=prefix, name=name, journal=journal,
                                      visibility_timeout_s=visibility_timeout_s, **kwargs)
    known = ", ".join(f"{s}://" for schemes, _where in ENGINES.values() for s in schemes)
    raise ValueError(f"event store {name!r}: no engine for {redact(url)!r} (known: {known})")


__all__ = [
    "ENGINES", "GROUP_START_ALL", "GROUP_START_NEW", "NO_RETENTION", "AppendEntry", "ClaimResult", "DeadLetter",
    "GroupConsumer", "GroupInfo", "Held", "HeldLost", "Journal", "JourneyStep", "PendingEntry", "RedisStreamsStore",
    "Retention",
    "Store", "StoreError", "StoreUnsupported", "StoredEntry",
    "engine_class", "open_store", "position_key", "redact",
]
