"""Pushing the MeshConfig: from a committed change to a published, recorded version.

The path (ARCHITECTURE.md, docs/meshconfig.md)::

    save/delete of a model that feeds the document
      └─ post_save/post_delete/m2m_changed receiver: notes the change on a callback that
         ``transaction.on_commit`` runs once per transaction
           └─ after commit: the change goes to ``<prefix>push:changes``, and a Celery task is
              enqueued only if none is pending (``<prefix>push:pending``, SET NX with expiry)
                └─ governance.tasks.push_config → :func:`push`: under ``<prefix>push:lock``,
                   clear the pending marker, compile, and if the content changed record a
                   ConfigVersion (who, what, diff) and publish it to Redis: the snapshot, and
                   the patch from the version before (meshruntime.patch), which is what
                   runtimes holding that version apply.

Why no change is ever lost: the task clears the pending marker *before* it reads the database.
A change committed before that moment is in the snapshot it compiles; a change whose commit
callback runs after it finds no marker and enqueues a new task. Bursts coalesce because every
change committed while a task waits (``MESH_PUSH_DELAY_MS`` after a quiet spell, so that a
single change is out at once; ``MESH_PUSH_BURST_DELAY_MS`` in a burst, see
:func:`enqueue_push`) or waits for the lock rides along with it. A lost task (crashed worker, emptied
broker), a bulk update that sends no signal, a key that expired: the periodic reconcile
(governance.tasks.reconcile_config) runs the same :func:`push`, and repairs a Redis that lost
the snapshots.

Redis keys of the portal's own, beside the contract's ``config:*``: ``push:pending``,
``push:recent`` (a version was published within the burst window), ``push:lock``,
``push:changes`` (a capped list of JSON change records) and ``push:status`` (the outcome of the
last attempt, shown on the config versions page).
"""

from __future__ import annotations

import gc
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone

from governance.diff import diff_documents
from meshruntime.config import ConfigError, publish_document, seal, validate_document
from meshruntime.patch import make_patch

log = logging.getLogger(__name__)

PENDING_TTL_SECONDS = 60  # a lost task blocks new ones at most this long (and reconcile runs anyway)
LOCK_TTL_MS = 120_000  # far above a compile of the largest mesh; only a crashed holder waits it out
MAX_CHANGES = 1000  # change records kept for the next version; a burst beyond is summarised
KEEP_SNAPSHOTS = 50  # config:<version> snapshots kept in Redis (the database keeps MESH_CONFIG_KEEP_DOCUMENTS)

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# --------------------------------------------------------------------------------------------
# Redis


@lru_cache(maxsize=4)
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=10.0, health_check_interval=30)


def redis_client() -> redis.Redis:
    return _client_for(settings.REDIS_URL)


def prefix() -> str:
    return settings.MESH_KEY_PREFIX


def key(name: str) -> str:
    return f"{prefix()}{name}"


def channel_group() -> str:
    """The Channels group of the runtimes page: one per key prefix (so tests stay apart)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", prefix()) + "runtimes"


# --------------------------------------------------------------------------------------------
# Signal receivers and the commit hook


def _current_actor():
    from meshadmin.audit import _context  # the audit log's own ContextVar: one notion of "who"

    ctx = _context.get()
    return ctx.actor if ctx is not None else None


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
    actor = _current_actor()
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


def feed_models() -> list:
    """The models whose rows end up in the document (Team: its slug names applications' teams)."""
    from governance.models import AccessRule, Application, ApplicationKey, RoutingRule
    from meshadmin.models import Team
    from subscriptions.models import Subscription
    from topics.models import EventStore, Topic

    return [EventStore, Topic, Team, Application, ApplicationKey, AccessRule, RoutingRule, Subscription]


def connect() -> None:
    """Connect the receivers (called once, from GovernanceConfig.ready())."""
    from governance.models import ConfigVersion, RoutingRule
    from meshadmin import audit

    for model in feed_models():
        uid = f"meshconfig_push_{model._meta.label_lower}"
        post_save.connect(_on_save, sender=model, dispatch_uid=f"{uid}_save")
        post_delete.connect(_on_delete, sender=model, dispatch_uid=f"{uid}_delete")
    m2m_changed.connect(_on_m2m, sender=RoutingRule.targets.through, dispatch_uid="meshconfig_push_route_targets")
    # Versions are audited (a rollback names its operator); the documents are too big for the log.
    audit.register(ConfigVersion, exclude=("document", "diff", "changes"))


def mark_dirty(changes: list[dict[str, Any]] | None = None) -> bool:
    """Record committed ``changes`` and make sure a push task is on its way; True if enqueued.

    Costs one round trip to Redis, and a message to the broker only when no task is pending.
    A Redis outage is logged, not raised: the change is committed, and reconcile picks it up.
    """
    try:
        pipe = redis_client().pipeline(transaction=False)
        if changes:
            pipe.rpush(key("push:changes"), *(json.dumps(change) for change in changes))
            pipe.ltrim(key("push:changes"), -MAX_CHANGES, -1)
        pipe.set(key("push:pending"), str(time.time()), nx=True, ex=PENDING_TTL_SECONDS)
        pipe.exists(key("push:recent"), key("push:lock"))  # a version just out, or a push running
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
    make them) it waits
    ``MESH_PUSH_BURST_DELAY_MS``, and every change committed meanwhile rides along: a burst
    makes one version per burst delay, not one per change."""
    from kombu.exceptions import OperationalError

    from governance.tasks import push_config

    delay = (settings.MESH_PUSH_BURST_DELAY_MS if busy else settings.MESH_PUSH_DELAY_MS) / 1000
    try:
        # Stale messages are dropped rather than run hours later by some worker (they would be
        # harmless, being idempotent, but useless). No countdown at all when there is no delay:
        # a task with one waits on the worker's timer.
        push_config.apply_async(countdown=delay or None, expires=delay + 300, queue=settings.MESH_PUSH_QUEUE)
    except OperationalError as error:
        log.warning("mesh config push not enqueued (%s); the periodic reconcile will push", error)
        redis_client().delete(key("push:pending"))
        return False
    return True


# --------------------------------------------------------------------------------------------
# The lock


class PushBusy(Exception):
    """Another push holds the lock."""


@contextmanager
def push_lock(wait: float = 0.0) -> Iterator[None]:
    """Hold ``<prefix>push:lock``; wait up to ``wait`` seconds for it, else raise :class:`PushBusy`."""
    client = redis_client()
    token = secrets.token_hex(16)
    deadline = time.monotonic() + wait
    while not client.set(key("push:lock"), token, nx=True, px=LOCK_TTL_MS):
        if time.monotonic() >= deadline:
            raise PushBusy("another push is in progress")
        time.sleep(0.05)
    try:
        yield
    finally:
        client.eval(_RELEASE_SCRIPT, 1, key("push:lock"), token)


# --------------------------------------------------------------------------------------------
# Push


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile. A compile builds some 250,000 dicts and lists at
    10,000 topics and rules, none of them in a cycle; the collections their allocation would
    trigger walk every object of the process again and again, and doubled the compile's time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class PushResult:
    outcome: str  # "published", "unchanged", "republished", "failed"
    version: int | None = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "version": self.version, "error": self.error}


# The last document this process recorded, so that the next diff need not load it back.
_last_document: dict[str, Any] | None = None
# Whether this process has validated a whole document yet (see validate()).
_checked_whole = False


def _previous_document(latest) -> dict[str, Any] | None:
    if latest is None:
        return None
    if _last_document is not None and _last_document["version"] == latest.version:
        return _last_document
    from governance.models import ConfigVersion

    return ConfigVersion.objects.values_list("document", flat=True).get(pk=latest.pk)


def _take_changes() -> list[dict[str, Any]]:
    """Clear the pending marker and take the recorded changes, atomically (see the module doc)."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.delete(key("push:pending"))
    pipe.lrange(key("push:changes"), 0, -1)
    pipe.delete(key("push:changes"))
    _, raw, _ = pipe.execute()
    return [json.loads(item) for item in raw]


def _give_back(changes: list[dict[str, Any]]) -> None:
    if changes:
        redis_client().lpush(key("push:changes"), *(json.dumps(change) for change in reversed(changes)))


def _attach_late_changes(latest, changes: list[dict[str, Any]]) -> None:
    """Give the latest version the changes it holds but whose records came after it.

    A change's record reaches Redis after its commit, so a push may compile a change and the
    next push find its record; that push compiles nothing new, and the record belongs to the
    version before. Changes made after that version, that changed nothing, are dropped.
    """
    from governance.models import ConfigVersion

    late = [c for c in changes if datetime.fromisoformat(c["at"]) <= latest.created]
    if late:
        recorded = ConfigVersion.objects.values_list("changes", flat=True).get(pk=latest.pk)
        ConfigVersion.objects.filter(pk=latest.pk).update(changes=(recorded + late)[-MAX_CHANGES:])


def _mark_recent() -> None:
    """A version was just published: a change in the burst window is part of a burst (enqueue_push)."""
    try:
        redis_client().set(key("push:recent"), "1", px=max(1, settings.MESH_PUSH_BURST_WINDOW_MS))
    except redis.RedisError as error:
        log.warning("push not marked recent (%s); the next change is pushed without waiting", error)


def _record_status(kind: str, result: PushResult) -> PushResult:
    status = {**result.as_dict(), "kind": kind, "at": timezone.now().isoformat()}
    try:
        redis_client().set(key("push:status"), json.dumps(status))
    except redis.RedisError as error:
        log.warning("push outcome not recorded in Redis: %s", error)
    return result


def last_status() -> dict[str, Any] | None:
    raw = redis_client().get(key("push:status"))
    return json.loads(raw) if raw else None


def latest_version():
    from governance.models import ConfigVersion

    return ConfigVersion.objects.defer("document", "diff", "changes").order_by("-version").first()


def _next_version(latest) -> int:
    # Never below what Redis announced: runtimes ignore versions older than the one they hold,
    # so a database restored from a backup must not restart the numbering under them.
    raw = redis_client().get(key("config:latest"))
    announced = int(raw) if raw and raw.isdigit() else 0
    return max(latest.version if latest else 0, announced) + 1


def _actors(changes: list[dict[str, Any]], user) -> tuple[Any, str]:
    if user is not None:
        return user, user.get_username()
    names = sorted({change["actor"] for change in changes})
    ids = {change.get("actor_id") for change in changes}
    created_by = None
    if len(ids) == 1 and None not in ids:
        from django.contrib.auth import get_user_model

        created_by = get_user_model().objects.filter(pk=ids.pop()).first()
    return created_by, ", ".join(names) or "system"


def validate(doc: dict[str, Any], previous: dict[str, Any] | None, diff: dict[str, Any]) -> None:
    """Raise ConfigError unless runtimes would accept ``doc``.

    After a valid ``previous`` version, only the changed part is checked (governance.diff
    explains why that is enough): ``validate_document`` on a whole mesh of 10,000 topics and
    rules costs 0.3 s, on a change a few milliseconds. The first version is checked whole; the
    property tests check that every compiled document is valid whole. So is the first document a
    process validates: after a deployment, the contract may refuse what the previous one allowed.
    """
    global _checked_whole
    from governance.diff import changed_part, locate

    if previous is None or not _checked_whole:
        validate_document(doc)
        _checked_whole = True
        return
    part = changed_part(doc, diff)
    try:
        validate_document(seal(part, doc["version"]))
    except ConfigError as error:
        raise ConfigError(locate(str(error), part, doc)) from None


def _record_and_publish(doc, *, kind, source_checksum, diff, previous=None, changes=(), user=None, reason="",
                        rollback_of=None):
    """Create the ConfigVersion row first, then publish (with the patch from ``previous``, the
    latest version's document): a crash in between leaves a version that reconcile publishes,
    never a published version without its row."""
    global _last_document
    from governance.diff import summarize
    from governance.models import ConfigVersion

    created_by, actor_name = _actors(list(changes), user)
    version = ConfigVersion.objects.create(
        version=doc["version"], checksum=doc["checksum"], source_checksum=source_checksum, document=doc,
        kind=kind, created_by=created_by, actor_name=actor_name[:250],
        reason=(reason or summarize(diff))[:500], changes=list(changes)[-MAX_CHANGES:], diff=diff,
        rollback_of=rollback_of,
    )
    _last_document = doc
    patch = None
    if previous is not None:
        patch = make_patch(previous, doc, {section: {item["id"] for item in entry["changed"]}
                                           for section, entry in diff.items()})
    publish(version, doc, patch=patch)
    return version


def publish(version, doc: dict[str, Any] | None = None, *, patch: dict[str, Any] | None = None) -> None:
    """Write ``version`` to Redis (snapshot, the patch from the version before if given, latest,
    announcement) and stamp ``published_at``."""
    from governance.models import ConfigVersion

    doc = doc if doc is not None else ConfigVersion.objects.values_list("document", flat=True).get(pk=version.pk)
    client = redis_client()
    publish_document(client, doc, prefix(), check=False, patch=patch)  # validated when it was recorded
    if version.version > KEEP_SNAPSHOTS:
        old = version.version - KEEP_SNAPSHOTS
        client.delete(key(f"config:{old}"), key(f"config:{old}:patch"))
    now = timezone.now()
    ConfigVersion.objects.filter(pk=version.pk).update(published_at=now)
    version.published_at = now
    broadcast_version(version)


def ensure_published(latest) -> bool:
    """Re-publish ``latest`` if Redis does not hold it (emptied, restarted without persistence,
    or the publish after recording failed). True if it had to."""
    client = redis_client()
    raw = client.get(key("config:latest"))
    announced = int(raw) if raw and raw.isdigit() else 0
    if announced > latest.version or (announced == latest.version and client.exists(key(f"config:{announced}"))):
        return False
    log.warning("Redis holds config version %s, the database %s: re-publishing", announced or "none",
                latest.version)
    publish(latest)
    return True


def compile_snapshot() -> dict[str, Any]:
    """Compile from one consistent snapshot of the database (REPEATABLE READ on PostgreSQL;
    SQLite's transactions are serializable already)."""
    from governance.compiler import compile_mesh_config

    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return compile_mesh_config()


def push(kind: str = "push", *, force: bool = False, user=None, reason: str = "", wait: float = 0.0,
         rollback_of=None, lock_held: bool = False) -> PushResult:
    """Compile the database and publish a new version if its content changed.

    ``force`` ("push now") compares with the latest version's content rather than with the
    compile it answered (they differ only for the rollbacks of old, which published a version's
    content over the database), so it replaces such a version with the database's state; when even the
    content is unchanged it announces the latest version again. ``rollback_of``: the version whose
    content a rollback restored (governance.restore), which holds the lock already
    (``lock_held``) so that no other push publishes its restore first. Raises :class:`PushBusy`
    when the lock stays taken for ``wait`` seconds.
    """
    from governance.models import ConfigVersion

    with nullcontext() if lock_held else push_lock(wait), gc_paused():
        changes = _take_changes()
        started = time.perf_counter()
        try:
            body = compile_snapshot()
            compiled = time.perf_counter()
            latest = latest_version()
            doc = seal(body, _next_version(latest))  # sealing computes the checksum once
            checksum = doc["checksum"]
            baseline = None if latest is None else (latest.checksum if force else latest.source_checksum)
            if checksum == baseline:
                _attach_late_changes(latest, changes)
                if force:
                    publish(latest)
                    return _record_status(kind, PushResult("republished", latest.version))
                repaired = ensure_published(latest)
                return _record_status(kind, PushResult("republished" if repaired else "unchanged",
                                                       latest.version))
            sealed = time.perf_counter()
            previous = _previous_document(latest)
            diff = diff_documents(previous, doc)
            validate(doc, previous, diff)
            checked = time.perf_counter()
        except ConfigError as error:
            _give_back(changes)
            log.error("mesh config not published: %s", error)
            return _record_status(kind, PushResult("failed", error=str(error)))
        except BaseException:
            _give_back(changes)
            raise
        if kind == ConfigVersion.PUSH and not changes:
            kind = ConfigVersion.RECONCILE  # a change that came without a signal, or a key that expired
        elif kind == ConfigVersion.RECONCILE and changes:
            kind = ConfigVersion.PUSH
        version = _record_and_publish(doc, kind=kind, source_checksum=checksum, diff=diff, previous=previous,
                                      changes=changes, user=user, reason=reason, rollback_of=rollback_of)
        _mark_recent()
        done = time.perf_counter()
        first = min((datetime.fromisoformat(change["at"]) for change in changes), default=None)
        log.info("published mesh config version %s (%s) in %.3f s: compile %.3f, seal %.3f, diff and validation "
                 "%.3f, record and publish %.3f%s", version.version, version.reason, done - started,
                 compiled - started, sealed - compiled, checked - sealed, done - checked,
                 f"; {(timezone.now() - first).total_seconds():.3f} s after the first change" if first else "")
        return _record_status(kind, PushResult("published", version.version))


PRUNED = "This version's document was pruned (MESH_CONFIG_KEEP_DOCUMENTS); its record and diff remain."


def prune_documents(keep: int | None = None) -> int:
    """Drop the documents of all but the newest ``keep`` versions (``MESH_CONFIG_KEEP_DOCUMENTS``;
    0 keeps every one); return how many. Their records (who, when, why, the diff) stay, but they
    can no longer be rolled back to or downloaded. A mesh of 10,000 topics is 4 MB a version."""
    from governance.models import ConfigVersion

    keep = settings.MESH_CONFIG_KEEP_DOCUMENTS if keep is None else keep
    latest = ConfigVersion.objects.order_by("-version").values_list("version", flat=True).first()
    if keep <= 0 or latest is None:
        return 0
    pruned = ConfigVersion.objects.filter(version__lte=latest - keep, pruned=False).update(document=None, pruned=True)
    if pruned:
        log.info("pruned the documents of %d config versions (keeping the newest %d)", pruned, keep)
    return pruned


# --------------------------------------------------------------------------------------------
# Live updates


def broadcast(message: dict[str, Any]) -> None:
    """Send ``message`` to the runtimes pages; a channel layer problem never fails a push."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(channel_group(), message)
    except (redis.RedisError, OSError) as error:
        log.warning("live update not sent: %s", error)


def version_summary(version) -> dict[str, Any] | None:
    if version is None:
        return None
    published = version.published_at
    return {"id": version.pk, "version": version.version, "checksum": version.checksum, "kind": version.kind,
            "actor": version.actor_name, "reason": version.reason,
            "published_at": published.astimezone(UTC).isoformat() if published else None,
            "url": version.get_absolute_url()}


def broadcast_version(version) -> None:
    """A new version: every runtime's convergence changes with it, so all of them go along."""
    from governance.models import Runtime
    from governance.registry import serialize

    broadcast({"type": "config.version", "latest": version_summary(version),
               "runtimes": serialize(Runtime.objects.all(), version)})


def utc(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z") if dt else None
