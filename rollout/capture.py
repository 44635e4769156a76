"""Change capture: every committed change to what feeds the MeshConfig schedules a push.

::

    save/delete of a model that feeds the document
      └─ post_save/post_delete/m2m_changed receiver: notes the change on a callback that
         ``transaction.on_commit`` runs once per transaction (:class:`PendingPush`)
           └─ after commit (:func:`mark_dirty`): the change goes to ``push:changes``, and a
              Celery task is enqueued only if none is pending (``push:pending``, SET NX with
              expiry) — rollout.tasks.push_config, which runs rollout.push.push

Receivers rather than calls in views, as for the audit log: pages, the API, the admin, bulk
actions and the shell all save through the ORM. What sends no signal (a queryset ``update()``)
is caught by the periodic reconcile, which runs the same push. rollout.push explains why no
change is ever lost and how bursts coalesce.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone
from kombu.exceptions import OperationalError

from governance.models import AccessRule, Application, ApplicationKey, RoutingRule
from meshadmin.audit import current_actor
from meshadmin.models import Team
from subscriptions.models import Subscription
from topics.models import EventStore, Topic

from . import redis_keys
from .push import MAX_CHANGES
from .tasks import push_config

log = logging.getLogger(__name__)

PENDING_TTL_SECONDS = 60  # a lost task blocks new ones at most this long (and reconcile runs anyway)

#: The models whose rows end up in the document (Team: its slug names applications' teams).
FEED_MODELS = (EventStore, Topic, Team, Application, ApplicationKey, AccessRule, RoutingRule, Subscription)


class PendingPush:
    """The commit callback of one transaction: it carries the changes made in it.

    One per transaction, however many rows change: the receivers find it among the connection's
    pending callbacks. If a savepoint that registered it rolls back, Django drops it with its
    changes, and the next change registers a new one.
    """

    def __init__(self) -> None:
        self.changes: list[dict[str, Any]] = []
        self.spent = False

    def __call__(self) -> None:
        self.spent = True
        mark_dirty(self.changes)


def _pending_push() -> PendingPush:
    if connection.in_atomic_block:
        for _savepoints, func, _robust in reversed(connection.run_on_commit):
            if isinstance(func, PendingPush) and not func.spent:
                return func
    pending = PendingPush()
    if connection.in_atomic_block:
        transaction.on_commit(pending, robust=True)
    return pending


def _note(instance, action: str) -> None:
    actor = current_actor()  # the audit log's notion of "who": one for both
    change = {
        "action": action,
        "type": instance._meta.verbose_name,
        "object": str(instance)[:200],
        "actor": actor.get_username() if actor is not None else "system",
        "actor_id": actor.pk if actor is not None else None,
        "at": timezone.now().isoformat(),
    }
    pending = _pending_push()
    pending.changes.append(change)
    if not connection.in_atomic_block:
        pending()  # autocommit: the change is already committed


def _on_save(sender, instance, created, raw=False, **kwargs) -> None:
    if not raw:
        _note(instance, "create" if created else "update")


def _on_delete(sender, instance, **kwargs) -> None:
    _note(instance, "delete")


def _on_m2m(sender, instance, action, reverse, **kwargs) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        _note(instance, "update")


def connect() -> None:
    """Connect the receivers (called once, from RolloutConfig.ready())."""
    for model in FEED_MODELS:
        uid = f"meshconfig_push_{model._meta.label_lower}"
        post_save.connect(_on_save, sender=model, dispatch_uid=f"{uid}_save")
        post_delete.connect(_on_delete, sender=model, dispatch_uid=f"{uid}_delete")
    m2m_changed.connect(_on_m2m, sender=RoutingRule.targets.through, dispatch_uid="meshconfig_push_route_targets")


def mark_dirty(changes: list[dict[str, Any]] | None = None) -> bool:
    """Record committed ``changes`` and make sure a push task is on its way; True if enqueued.

    Costs one round trip to Redis, and a message to the broker only when no task is pending.
    A Redis outage is logged, not raised: the change is committed, and reconcile picks it up.
    """
    try:
        pipe = redis_keys.client().pipeline(transaction=False)
        if changes:
            pipe.rpush(redis_keys.keys().push_changes, *(json.dumps(change) for change in changes))
            pipe.ltrim(redis_keys.keys().push_changes, -MAX_CHANGES, -1)
        pipe.set(redis_keys.keys().push_pending, str(time.time()), nx=True, ex=PENDING_TTL_SECONDS)
        pipe.exists(redis_keys.keys().push_recent, redis_keys.keys().push_lock)  # a version just out, or a push running
        *_, first, busy = pipe.execute()
    except redis.RedisError as error:
        log.warning("mesh config push not enqueued (%s); the periodic reconcile will push", error)
        return False
    if not first:
        return False
    return enqueue_push(busy=bool(busy))


def enqueue_push(*, busy: bool = False) -> bool:
    """Enqueue a push task. After a quiet spell it runs in ``MESH_PUSH_DELAY_MS``, so that one
    change reaches the runtimes at once. In a burst (a push is running, or the last version was
    published less than ``MESH_PUSH_BURST_WINDOW_MS`` ago: changes closer together than people
    make them) it waits ``MESH_PUSH_BURST_DELAY_MS``, and every change committed meanwhile rides
    along: a burst makes one version per burst delay, not one per change."""
    delay = (settings.MESH_PUSH_BURST_DELAY_MS if busy else settings.MESH_PUSH_DELAY_MS) / 1000
    try:
        # Stale messages are dropped rather than run hours later by some worker (they would be
        # harmless, being idempotent, but useless). No countdown at all when there is no delay:
        # a task with one waits on the worker's timer.
        push_config.apply_async(countdown=delay or None, expires=delay + 300, queue=settings.MESH_PUSH_QUEUE)
    except OperationalError as error:
        log.warning("mesh config push not enqueued (%s); the periodic reconcile will push", error)
        redis_keys.client().delete(redis_keys.keys().push_pending)
        return False
    return True
