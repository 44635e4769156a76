"""Names of what the engines that are not Redis hold for the mesh: every one is built here.

Redis key names belong to the mesh's key-space module; this module does the same for Kafka
topics and consumer groups, NATS JetStream streams, subjects and consumers, and the MQTT topic
tree, so that no engine spells a name inline. Pure functions, no I/O.

Mesh topic names are dot-separated segments of letters, digits, ``-`` and ``_``
(:func:`meshruntime.policy.validate_topic_name`) and subscription ids ``sub-<n>``
(``meshconfig-1.json``); both are valid Kafka topic characters and NATS subject tokens as they
are. The mesh's key prefix (``mesh:`` by default) is free text, so it is reduced to a safe
token: letters, digits, ``-`` and ``_`` stay, anything else (the usual trailing ``:``) is cut at
the ends and becomes ``-`` inside.

- Kafka: ``<p>.topic.<topic>``, ``<p>.redeliver.<sub>``, ``<p>.dlq.<sub>``; consumer groups
  ``<p>.<sub>`` (the topic) and ``<p>.<sub>.redeliver``.
- NATS: one stream per topic, ``<p>_topic_<topic with . as ~>`` (stream names cannot hold a
  dot) on subject ``<p>.topic.<topic>``; dead letters in one stream ``<p>_dlq`` on subjects
  ``<p>.dlq.<sub>``; dead letters put back in one stream ``<p>_redeliver`` on subjects
  ``<p>.redeliver.<sub>``; the durable consumer of a subscription is named by its id.
- MQTT: the mesh topic ``a.b.c`` is ``<root>/a/b/c`` in the broker's topic tree.
"""

from __future__ import annotations

import re

from meshruntime.policy import PolicyError, validate_topic_name

__all__ = [
    "kafka_dlq_topic", "kafka_group", "kafka_redeliver_group", "kafka_redeliver_topic", "kafka_topic",
    "mesh_topic_of_mqtt",    "mqtt_filter", "mqtt_topic", "nats_consumer", "nats_dlq_stream", "nats_dlq_subject",
    "nats_redeliver_stream", "nats_redeliver_subject", "nats_topic_stream", "nats_topic_subject",
    "prefix_token",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def prefix_token(prefix: str) -> str:
    """The key prefix as one token that every engine accepts (``mesh:`` -> ``mesh``)."""
    token = _UNSAFE.sub("-", prefix).strip("-")
    if not token:
        raise ValueError(f"the key prefix {prefix!r} has no letter or digit to name streams with")
    return token


def _topic(topic: str) -> str:
    try:
        validate_topic_name(topic)  # the mesh's one rule for names (and subscription ids fit it)
    except PolicyError as error:
        raise ValueError(str(error)) from None
    return topic


# -- Kafka ---------------------------------------------------------------------------------------
def kafka_topic(prefix: str, topic: str) -> str:
    return f"{prefix_token(prefix)}.topic.{_topic(topic)}"


def kafka_redeliver_topic(prefix: str, subscription: str) -> str:
    return f"{prefix_token(prefix)}.redeliver.{_topic(subscription)}"


def kafka_dlq_topic(prefix: str, subscription: str) -> str:
    return f"{prefix_token(prefix)}.dlq.{_topic(subscription)}"


def kafka_group(prefix: str, subscription: str) -> str:
    return f"{prefix_token(prefix)}.{_topic(subscription)}"


def kafka_redeliver_group(prefix: str, subscription: str) -> str:
    """The group reading the redelivery topic: apart from the topic's, so that balancing the two
    never moves the topic's partition away from a member that holds its events."""
    return f"{prefix_token(prefix)}.{_topic(subscription)}.redeliver"


# -- NATS JetStream ------------------------------------------------------------------------------
def nats_topic_stream(prefix: str, topic: str) -> str:
    return f"{prefix_token(prefix)}_topic_{_topic(topic).replace('.', '~')}"


def nats_topic_subject(prefix: str, topic: str) -> str:
    return f"{prefix_token(prefix)}.topic.{_topic(topic)}"


def nats_dlq_stream(prefix: str) -> str:
    return f"{prefix_token(prefix)}_dlq"


def nats_dlq_subject(prefix: str, subscription: str = "*") -> str:
    """The dead letters of one subscription (``*``: of all, the stream's subjects)."""
    return f"{prefix_token(prefix)}.dlq.{subscription if subscription == '*' else _topic(subscription)}"


def nats_redeliver_stream(prefix: str) -> str:
    return f"{prefix_token(prefix)}_redeliver"


def nats_redeliver_subject(prefix: str, subscription: str = "*") -> str:
    return f"{prefix_token(prefix)}.redeliver.{subscription if subscription == '*' else _topic(subscription)}"


def nats_consumer(subscription: str) -> str:
    """A subscription's durable consumer, on its topic's stream and on the redelivery stream."""
    return _topic(subscription)


# -- MQTT ----------------------------------------------------------------------------------------
def mqtt_topic(root: str, topic: str) -> str:
    return "/".join((*_root_levels(root), *_topic(topic).split(".")))


def mqtt_filter(root: str, topic: str) -> str:
    """The subscription filter for a mesh topic (``*`` in a mesh pattern is MQTT's ``#``)."""
    if topic == "*":
        return "/".join((*_root_levels(root), "#"))
    if topic.endswith(".*"):
        return mqtt_topic(root, topic[:-2]) + "/#"
    return mqtt_topic(root, topic)


def mesh_topic_of_mqtt(root: str, mqtt_name: str) -> str | None:
    """The mesh topic an MQTT topic stands for, or None when it is outside the root or not a
    valid mesh topic name (a device publishing to ``mesh/Bad Name`` is refused, not guessed)."""
    levels = _root_levels(root)
    parts = mqtt_name.split("/")
    if parts[: len(levels)] != levels or len(parts) == len(levels):
        return None
    topic = ".".join(parts[len(levels):])
    try:
        return _topic(topic)
    except ValueError:
        return None


def _root_levels(root: str) -> list[str]:
    levels = [level for level in root.split("/") if level]
    for level in levels:
        if level in ("+", "#") or "+" in level or "#" in level:
            raise ValueError(f"the MQTT root {root!r} may not hold wildcards")
    return levels
