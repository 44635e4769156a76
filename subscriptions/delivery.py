"""A subscription's delivery as the portal sees it and acts on it, over the runtimes' Redis.

The Redis work itself (XINFO GROUPS, XRANGE/XREVRANGE of the dead-letter stream, the
redelivery script, XGROUP SETID) is :mod:`meshruntime.delivery_admin`, the runtime's API for the
portal, shared with the runtime's fault tests; this module binds it to the portal's settings and
writes the audit entry of every action.
"""

from __future__ import annotations

import re
from functools import lru_cache

import redis
from django.conf import settings

from meshadmin.audit import record_action
from meshruntime.delivery_admin import DeadLetter, DeliveryOperations, DeliveryState, SkipResult

from .models import Subscription

__all__ = ["DeliveryUnavailable", "dead_letters", "not_delivered_because", "redeliver", "skip_to_now", "state"]

PAGE = 50
#: A dead letter's id (a Redis stream id), as the page and the API take it.
STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")
#: Dead letters redelivered by id in one request, at most.
MAX_IDS = 1000


class DeliveryUnavailable(Exception):
    """Redis could not be reached; the page says so instead of failing."""


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


def operations() -> DeliveryOperations:
    return DeliveryOperations(_client(settings.REDIS_URL), settings.MESH_KEY_PREFIX)


def _guard(call):
    try:
        return call()
    except (redis.RedisError, OSError) as error:
        raise DeliveryUnavailable(f"the runtimes' Redis is unreachable: {error}") from error


def not_delivered_because(subscription: Subscription) -> str | None:
    """Why no runtime delivers ``subscription`` (so there is nothing to redeliver or skip), or None.

    Only an active or paused subscription has runtimes to act on (a revoked one's stream and
    group are gone); the page and the API answer 409 with this."""
    if subscription.state in Subscription.LIVE_STATES:
        return None
    return f"{subscription.subscription_id} is {subscription.get_state_display().lower()}: no runtime delivers it."


def state(subscription: Subscription) -> DeliveryState:
    return _guard(lambda: operations().state(subscription.subscription_id, subscription.topic.name))


def dead_letters(subscription: Subscription, *, before: str | None = None, count: int = PAGE) -> list[DeadLetter]:
    return _guard(lambda: operations().dead_letters(subscription.subscription_id, count=count, before=before))


def redeliver(subscription: Subscription, ids: list[str] | None, *, user) -> int:
    """Put dead letters back for this subscription only (``ids``, or all of them with None)."""
    by = user.get_username()
    moved = _guard(lambda: operations().redeliver(subscription.subscription_id, ids, by=by))
    record_action(subscription, "redeliver dead letters", dead_letters="all" if ids is None else ids,
                  redelivered=moved)
    return moved


def skip_to_now(subscription: Subscription, *, user) -> SkipResult:
    """Move the consumer group to the end of the topic; pending events are acknowledged."""
    result = _guard(lambda: operations().skip_to_now(subscription.subscription_id, subscription.topic.name))
    record_action(subscription, "skip to now", skipped=result.skipped, acknowledged=result.acknowledged)
    return result
