"""Telling open viewers that someone's rights may have changed, in every portal process.

A viewer's socket lives in one process; the change (a deactivated user, a revoked subscription,
a membership removed, a sign-out) happens in another: a page, the API, the admin, a task. The
change sends ``access.changed`` through the channel layer to a group per user, per topic and per
application; every consumer in such a group checks its rights again at once (``consumers``).
Changes that send nothing (a session that simply expires, an update through ``QuerySet.update``)
are caught by the periodic check (``MESH_TAIL_RECHECK_SECONDS``).
"""

from __future__ import annotations

import asyncio
import logging
import re

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from rollout import redis_keys

log = logging.getLogger(__name__)

__all__ = ["ACCESS_CHANGED", "application_group", "notify", "topic_group", "user_group"]

#: The channel-layer message type; consumers handle it as ``access_changed``.
ACCESS_CHANGED = "access.changed"


def _group(kind: str, pk: object) -> str:
    # One set of groups per key prefix, so that meshes (and tests) sharing a Redis stay apart.
    return re.sub(r"[^A-Za-z0-9._-]", "_", redis_keys.prefix()) + f"tracing.{kind}.{pk}"


def user_group(pk: object) -> str:
    return _group("user", pk)


def topic_group(pk: object) -> str:
    return _group("topic", pk)


def application_group(pk: object) -> str:
    return _group("application", pk)


def notify(*groups: str) -> None:
    """Send ``access.changed`` to ``groups`` once the current transaction commits."""
    if groups:
        transaction.on_commit(lambda: _send(groups))


def _send(groups: tuple[str, ...]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": ACCESS_CHANGED}
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: a request or a task, in a thread without a loop
        try:
            for group in groups:
                async_to_sync(layer.group_send)(group, message)
        except (redis.RedisError, OSError) as error:
            log.warning("access change not announced to open viewers (the periodic check will): %s", error)
        return
    for group in groups:  # called from async code: send without blocking its loop
        task = asyncio.get_running_loop().create_task(layer.group_send(group, message))
        _sending.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(_sending.discard)


_sending: set[asyncio.Task] = set()
