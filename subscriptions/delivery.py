"""A subscription's delivery as the portal sees it and acts on it, wherever its topic lives.

A topic on the mesh's own Redis goes through :mod:`meshruntime.delivery_admin` (XINFO GROUPS,
XRANGE/XREVRANGE of the dead-letter stream, the redelivery script, XGROUP SETID), the runtime's
API for the portal, shared with the runtime's fault tests. A topic on another engine (Kafka,
NATS JetStream, another Redis) is asked through that engine's own store code
(:mod:`topics.engines`: lag, pending, dead letters, redelivery), and the runtimes' status record
still comes from the mesh's Redis. This module binds both to the portal's settings and writes the
audit entry of every action.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

import redis
from django.conf import settings

from meshadmin.audit import record_action
from meshruntime.delivery_admin import DeadLetter, DeliveryOperations, DeliveryState, SkipResult
from meshruntime.store import DeadLetter as StoredDeadLetter
from meshruntime.store import Store, StoreUnsupported
from meshruntime.store.storeset import DEFAULT_CONNECTION
from topics import engines

from .models import Subscription

__all__ = ["DeliveryUnavailable", "dead_letters", "not_delivered_because", "redeliver", "skip_to_now", "state"]

PAGE = 50
DEAD_LETTERS_COUNTED = 10_000  # on engines without a length of the dead letters, counted up to this
#: A position among dead letters, as the page and the API take it: a Redis stream id, Kafka's
#: "partition-offset", a NATS sequence.
STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?")
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
    except engines.EngineUnavailable as error:
        raise DeliveryUnavailable(str(error)) from error
    except StoreUnsupported as error:
        raise DeliveryUnavailable(str(error)) from error


def on_mesh_redis(subscription: Subscription) -> bool:
    """Whether the subscription's topic lives on the mesh's own Redis (delivery_admin's ground)."""
    store = subscription.topic.store
    if store.kind != store.REDIS:
        return False
    try:
        url = engines.connections().get(store.connection)
    except ValueError as error:
        raise DeliveryUnavailable(str(error)) from None
    return url == settings.REDIS_URL or (url is None and store.connection == DEFAULT_CONNECTION)


def _engine(subscription: Subscription, work):
    return _guard(lambda: engines.call(subscription.topic.store, work))


def _dead_letter(letter: StoredDeadLetter) -> DeadLetter:
    return DeadLetter(id=letter.id, event=letter.event, reason=letter.reason, status=letter.status,
                      attempts=letter.attempts, source_id=letter.source_id,
                      at=datetime.fromtimestamp(letter.at_ms / 1000, UTC) if letter.at_ms else None)


def not_delivered_because(subscription: Subscription) -> str | None:
    """Why no runtime delivers ``subscription`` (so there is nothing to redeliver or skip), or None.

    Only an active or paused subscription has runtimes to act on (a revoked one's stream and
    group are gone); the page and the API answer 409 with this."""
    if subscription.state in Subscription.LIVE_STATES:
        return None
    return f"{subscription.subscription_id} is {subscription.get_state_display().lower()}: no runtime delivers it."


def state(subscription: Subscription) -> DeliveryState:
    sub_id, topic = subscription.subscription_id, subscription.topic.name
    if on_mesh_redis(subscription):
        return _guard(lambda: operations().state(sub_id, topic))

    async def work(engine: Store):
        info = await engine.group_info(topic, sub_id)
        letters = await engine.dead_letters(sub_id, count=DEAD_LETTERS_COUNTED)
        return info, len(letters)

    info, dead = _engine(subscription, work)
    return _guard(lambda: operations().state_with(sub_id, info, dead_letters=dead))


def dead_letters(subscription: Subscription, *, before: str | None = None, count: int = PAGE) -> list[DeadLetter]:
    sub_id = subscription.subscription_id
    if on_mesh_redis(subscription):
        return _guard(lambda: operations().dead_letters(sub_id, count=count, before=before))

    async def work(engine: Store):
        return await engine.dead_letters(sub_id, count=count, before=before)

    return [_dead_letter(letter) for letter in _engine(subscription, work)]


def redeliver(subscription: Subscription, ids: list[str] | None, *, user) -> int:
    """Put dead letters back for this subscription only (``ids``, or all of them with None)."""
    by, sub_id = user.get_username(), subscription.subscription_id
    if on_mesh_redis(subscription):
        moved = _guard(lambda: operations().redeliver(sub_id, ids, by=by))
    else:
        async def work(engine: Store):
            return await engine.redeliver(sub_id, ids, by=by)

        moved = _engine(subscription, work)
    record_action(subscription, "redeliver dead letters", dead_letters="all" if ids is None else ids,
                  redelivered=moved)
    return moved


def skip_to_now(subscription: Subscription, *, user) -> SkipResult:
    """Move the consumer group to the end of the topic; pending events are acknowledged."""
    if not on_mesh_redis(subscription):
        raise DeliveryUnavailable(f"skip to now works on the mesh's Redis only; {subscription.topic.name} lives on "
                                  f"{subscription.topic.store.name} ({subscription.topic.store.get_kind_display()})")
    result = _guard(lambda: operations().skip_to_now(subscription.subscription_id, subscription.topic.name))
    record_action(subscription, "skip to now", skipped=result.skipped, acknowledged=result.acknowledged)
    return result
