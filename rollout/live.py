"""The live broadcast to browsers: what the runtimes and config version pages receive.

Pushes (a new version) and the heartbeat ingester (runtimes changed, turned stale or were
forgotten) send to one Channels group; rollout.consumers relays to each open page. Every message
carries RuntimeSerializer's output, the same as ``/api/v1/runtimes/``, so a page and the API
never disagree on a runtime's state. A channel layer problem is logged and never fails a push.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import redis_keys
from .api.serializers import RuntimeSerializer
from .models import ConfigVersion, Runtime

log = logging.getLogger(__name__)


def channel_group() -> str:
    """The Channels group of the runtimes pages: one per key prefix (so tests stay apart)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", redis_keys.prefix()) + "runtimes"


def broadcast(message: dict[str, Any]) -> None:
    """Send ``message`` to the runtimes pages; a channel layer problem never fails a push."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(channel_group(), message)
    except (redis.RedisError, OSError) as error:
        log.warning("live update not sent: %s", error)


def serialize(runtimes: Iterable[Runtime], latest: ConfigVersion | None) -> list[dict[str, Any]]:
    """The runtimes as the API shows them, their convergence measured against ``latest``."""
    return RuntimeSerializer(list(runtimes), many=True, context={"latest": latest}).data


def version_summary(version: ConfigVersion | None) -> dict[str, Any] | None:
    if version is None:
        return None
    published = version.published_at
    return {"id": version.pk, "version": version.version, "checksum": version.checksum, "kind": version.kind,
            "actor": version.actor_name, "reason": version.reason,
            "published_at": published.astimezone(UTC).isoformat() if published else None,
            "url": version.get_absolute_url()}


def broadcast_version(version: ConfigVersion) -> None:
    """A new version: every runtime's convergence changes with it, so all of them go along."""
    broadcast({"type": "config.version", "latest": version_summary(version),
               "runtimes": serialize(Runtime.objects.all(), version)})


def broadcast_runtimes(runtimes: list[Runtime], latest: ConfigVersion | None) -> None:
    """Runtimes whose beat or state changed."""
    if runtimes:
        broadcast({"type": "runtimes.update", "runtimes": serialize(runtimes, latest),
                   "latest": version_summary(latest)})


def broadcast_forgotten(runtime_ids: list[str]) -> None:
    """Runtimes deleted from the registry after a long silence."""
    broadcast({"type": "runtimes.forget", "forgotten": runtime_ids})
