"""Compile → record → publish: from the database to a published, recorded version; prune.

:func:`push` (run by rollout.tasks after committed changes, see rollout.capture, and by the
periodic reconcile) holds ``push:lock``, clears the pending marker, compiles
(rollout.compiler), and if the content changed records a ConfigVersion (who, what, the diff of
rollout.diff) and publishes it to Redis: the snapshot, and the patch from the version before
(meshruntime.patch), which is what runtimes holding that version apply. rollout.live tells the
open pages.

Why no change is ever lost: the task clears the pending marker *before* it reads the database.
A change committed before that moment is in the snapshot it compiles; a change whose commit
callback runs after it finds no marker and enqueues a new task. Bursts coalesce because every
change committed while a task waits (``MESH_PUSH_DELAY_MS`` after a quiet spell, so that a
single change is out at once; ``MESH_PUSH_BURST_DELAY_MS`` in a burst, see
rollout.capture.enqueue_push) or waits for the lock rides along with it. A lost task (crashed
worker, emptied broker), a bulk update that sends no signal, a key that expired: the periodic
reconcile (rollout.tasks.reconcile_config) runs the same :func:`push`.

Every push leaves a valid document announced above anything Redis announced before
(:func:`ensure_published`): a Redis that lost the newest version gets it again; one that
announces a version the database never recorded, or a damaged snapshot of the newest, gets the
newest content as a new version above it, since runtimes ignore lower numbers and never fetch a
refused version again. So one push, or the next reconcile, recovers every runtime.

A document that a live runtime would refuse for its length (rollout.limits) fails the push like
an invalid one: nothing is recorded or announced, and the reason is the push's status.

The keys (rollout.redis_keys): the contract's ``config:*``, and the portal's own
``push:pending``, ``push:recent`` (a version was published within the burst window),
``push:lock``, ``push:changes`` (a capped list of JSON change records) and ``push:status`` (the
outcome of the last attempt, shown on the config versions page).
"""

from __future__ import annotations

import gc
import json
import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from meshruntime.config import ConfigError, compute_checksum, seal, validate_document
from meshruntime.config_publish import publish_document
from meshruntime.patch import make_patch

from . import live, push_stats, redis_keys
from .compiler import compile_mesh_config
from .diff import changed_part, diff_documents, locate, summarize
from .limits import check_document_size
from .models import ConfigVersion

log = logging.getLogger(__name__)

LOCK_TTL_MS = 120_000  # far above a compile of the largest mesh; only a crashed holder waits it out
MAX_CHANGES = 1000  # change records kept for the next version; a burst beyond is summarised
KEEP_SNAPSHOTS = 50  # config:<version> snapshots kept in Redis (the database keeps MESH_CONFIG_KEEP_DOCUMENTS)

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# --------------------------------------------------------------------------------------------
# The lock


class PushBusy(Exception):
    """Another push holds the lock."""


@contextmanager
def push_lock(wait: float = 0.0) -> Iterator[None]:
    """Hold ``<prefix>push:lock``; wait up to ``wait`` seconds for it, else raise :class:`PushBusy`."""
    client = redis_keys.client()
    token = secrets.token_hex(16)
    deadline = time.monotonic() + wait
    while not client.set(redis_keys.keys().push_lock, token, nx=True, px=LOCK_TTL_MS):
        if time.monotonic() >= deadline:
            raise PushBusy("another push is in progress")
        time.sleep(0.05)
    try:
        yield
    finally:
        client.eval(_RELEASE_SCRIPT, 1, redis_keys.keys().push_lock, token)


# --------------------------------------------------------------------------------------------
# Push


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile. A compile of a large mesh builds hundreds of
    thousands of dicts and lists, none of them in a cycle; the collections their allocation would
    trigger walk every object of the process again and again (benchmarks/propagation.py measures
    the compile with it)."""
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
    return ConfigVersion.objects.values_list("document", flat=True).get(pk=latest.pk)


def _take_changes() -> list[dict[str, Any]]:
    """Clear the pending marker and take the recorded changes, atomically (see the module doc)."""
    pipe = redis_keys.client().pipeline(transaction=True)
    pipe.delete(redis_keys.keys().push_pending)
    pipe.lrange(redis_keys.keys().push_changes, 0, -1)
    pipe.delete(redis_keys.keys().push_changes)
    _, raw, _ = pipe.execute()
    return [json.loads(item) for item in raw]


def _give_back(changes: list[dict[str, Any]]) -> None:
    if changes:
        redis_keys.client().lpush(redis_keys.keys().push_changes, *(json.dumps(change) for change in reversed(changes)))


def _attach_late_changes(latest, changes: list[dict[str, Any]]) -> None:
    """Give the latest version the changes it holds but whose records came after it.

    A change's record reaches Redis after its commit, so a push may compile a change and the
    next push find its record; that push compiles nothing new, and the record belongs to the
    version before. Changes made after that version, that changed nothing, are dropped.
    """
    late = [c for c in changes if datetime.fromisoformat(c["at"]) <= latest.created]
    if late:
        recorded = ConfigVersion.objects.values_list("changes", flat=True).get(pk=latest.pk)
        ConfigVersion.objects.filter(pk=latest.pk).update(changes=(recorded + late)[-MAX_CHANGES:])


def _mark_recent() -> None:
    """A version was just published: a change in the burst window is part of a burst
    (rollout.capture.enqueue_push)."""
    try:
        redis_keys.client().set(redis_keys.keys().push_recent, "1", px=max(1, settings.MESH_PUSH_BURST_WINDOW_MS))
    except redis.RedisError as error:
        log.warning("push not marked recent (%s); the next change is pushed without waiting", error)


def _record_status(kind: str, result: PushResult, started: float) -> PushResult:
    """Keep the attempt's outcome for the config versions page, and count it for ``/metrics``."""
    push_stats.record(kind, result.outcome, time.perf_counter() - started)
    status = {**result.as_dict(), "kind": kind, "at": timezone.now().isoformat()}
    try:
        redis_keys.client().set(redis_keys.keys().push_status, json.dumps(status))
    except redis.RedisError as error:
        log.warning("push outcome not recorded in Redis: %s", error)
    return result


def last_status() -> dict[str, Any] | None:
    raw = redis_keys.client().get(redis_keys.keys().push_status)
    return json.loads(raw) if raw else None


def latest_version() -> ConfigVersion | None:
    """The newest version (recorded; published unless the publish after recording failed)."""
    return ConfigVersion.objects.defer("document", "diff", "changes").order_by("-version").first()


def _announced() -> int:
    """The version ``config:latest`` announces (0: none, or not a number)."""
    raw = redis_keys.client().get(redis_keys.keys().config_latest)
    return int(raw) if raw and raw.isdigit() else 0


def _next_version(latest, announced: int) -> int:
    # Never below what Redis announced: runtimes ignore versions older than the one they hold,
    # so a database restored from a backup must not restart the numbering under them.
    return max(latest.version if latest else 0, announced) + 1


def _actors(changes: list[dict[str, Any]], user) -> tuple[Any, str]:
    if user is not None:
        return user, user.get_username()
    names = sorted({change["actor"] for change in changes})
    ids = {change.get("actor_id") for change in changes}
    created_by = None
    if len(ids) == 1 and None not in ids:
        created_by = get_user_model().objects.filter(pk=ids.pop()).first()
    return created_by, ", ".join(names) or "system"


def validate(doc: dict[str, Any], previous: dict[str, Any] | None, diff: dict[str, Any]) -> None:
    """Raise ConfigError unless runtimes would accept ``doc``.

    After a valid ``previous`` version, only the changed part is checked (rollout.diff explains
    why that is enough): validating a whole large mesh takes hundreds of times longer than
    validating one change. The first version is checked whole; the property tests check that
    every compiled document is valid whole. So is the first document a process validates: after
    a deployment, the contract may refuse what the previous one allowed.
    """
    global _checked_whole
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
    doc = doc if doc is not None else ConfigVersion.objects.values_list("document", flat=True).get(pk=version.pk)
    client = redis_keys.client()
    publish_document(client, doc, redis_keys.prefix(), check=False, patch=patch)  # validated when it was recorded
    if version.version > KEEP_SNAPSHOTS:
        old = version.version - KEEP_SNAPSHOTS
        client.delete(redis_keys.keys().config(old), redis_keys.keys().config_patch(old))
    now = timezone.now()
    ConfigVersion.objects.filter(pk=version.pk).update(published_at=now)
    version.published_at = now
    live.broadcast_version(version)


def announcement_problem(latest, announced: int) -> str:
    """What is wrong with what Redis announces, measured by ``latest`` (the database's newest
    version); "" when it announces ``latest`` with its snapshot whole.

    Its snapshot is read back and its checksum recomputed: a runtime refuses a snapshot whose
    content does not match, and never fetches that version again, so only a number above it
    repairs a damaged one.
    """
    if announced != latest.version:
        return (f"Redis announces version {announced}, which the database does not hold" if announced > latest.version
                else f"Redis announces {f'version {announced}' if announced else 'no version'}, "
                     f"the database {latest.version}")
    key = redis_keys.keys().config(announced)
    raw = redis_keys.client().get(key)
    if raw is None:
        return f"Redis has lost the snapshot of version {announced}"
    try:
        snapshot = orjson.loads(raw)
        intact = (isinstance(snapshot, dict) and snapshot.get("version") == latest.version
                  and snapshot.get("checksum") == latest.checksum and compute_checksum(snapshot) == latest.checksum)
    except (orjson.JSONDecodeError, ConfigError):
        intact = False
    return "" if intact else f"Redis's snapshot of version {announced} is not the one the database recorded"


def _republish_above(latest, announced: int, problem: str, *, kind: str, user) -> ConfigVersion:
    """Record and publish ``latest``'s content as a new version above ``announced``: what
    recovers runtimes that refused what Redis announced, or that hold a higher number."""
    doc = seal(_previous_document(latest), _next_version(latest, announced))
    validate_document(doc)  # checked whole: it is what every runtime, new ones too, will start from
    reason = f"version {latest.version} published again as {doc['version']}: {problem}"
    log.warning("%s", reason)
    return _record_and_publish(doc, kind=kind, source_checksum=latest.source_checksum, diff={}, user=user,
                               reason=reason)


def ensure_published(latest, announced: int, *, kind: str = "reconcile", user=None) -> int | None:
    """Make Redis announce ``latest`` whole, above anything it announced before; return the
    version then announced, None if it already was. A Redis that lost it (emptied, restarted
    without persistence, a publish after recording failed) gets ``latest`` again; one that
    announces another number or another content gets ``latest``'s content as a new version."""
    problem = announcement_problem(latest, announced)
    if not problem:
        return None
    if announced < latest.version:
        log.warning("%s: publishing version %s again", problem, latest.version)
        publish(latest)
        return latest.version
    return _republish_above(latest, announced, problem, kind=kind, user=user).version


def compile_snapshot() -> dict[str, Any]:
    """Compile from one consistent snapshot of the database (REPEATABLE READ on PostgreSQL;
    SQLite's transactions are serializable already)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return compile_mesh_config()


def push(kind: str = "push", *, force: bool = False, user=None, reason: str = "", wait: float = 0.0,
         rollback_of=None, lock_held: bool = False) -> PushResult:
    """Compile the database and publish a new version if its content changed.

    An unchanged database repairs what Redis announces (:func:`ensure_published`).
    ``force`` ("push now") compares with the latest version's content rather than with the
    compile it answered (they differ only for the rollbacks of old, which published a version's
    content over the database), so it replaces such a version with the database's state; when even the
    content is unchanged, and Redis needs no repair, it announces the latest version again.
    ``rollback_of``: the version whose content a rollback restored (rollout.restore), which holds the lock already
    (``lock_held``) so that no other push publishes its restore first. Raises :class:`PushBusy`
    when the lock stays taken for ``wait`` seconds.
    """
    with nullcontext() if lock_held else push_lock(wait), gc_paused():
        changes = _take_changes()
        started = time.perf_counter()
        try:
            body = compile_snapshot()
            compiled = time.perf_counter()
            latest = latest_version()
            announced = _announced()
            doc = seal(body, _next_version(latest, announced))  # sealing computes the checksum once
            checksum = doc["checksum"]
            baseline = None if latest is None else (latest.checksum if force else latest.source_checksum)
            if checksum == baseline:
                _attach_late_changes(latest, changes)
                repair_kind = ConfigVersion.MANUAL if force else ConfigVersion.RECONCILE
                version = ensure_published(latest, announced, kind=repair_kind, user=user)
                if version is None and force:
                    publish(latest)  # "push now": announced again, for runtimes that missed it
                    version = latest.version
                return _record_status(kind, PushResult("unchanged" if version is None else "republished",
                                                       version or latest.version), started)
            sealed = time.perf_counter()
            previous = _previous_document(latest)
            diff = diff_documents(previous, doc)
            validate(doc, previous, diff)
            check_document_size(doc)  # over a live runtime's --max-config-bytes: refused, not announced
            checked = time.perf_counter()
        except ConfigError as error:
            _give_back(changes)
            log.error("mesh config not published: %s", error)
            return _record_status(kind, PushResult("failed", error=str(error)), started)
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
        return _record_status(kind, PushResult("published", version.version), started)


PRUNED = "This version's document was pruned (MESH_CONFIG_KEEP_DOCUMENTS); its record and diff remain."


def prune_documents(keep: int | None = None) -> int:
    """Drop the documents of all but the newest ``keep`` versions (``MESH_CONFIG_KEEP_DOCUMENTS``;
    0 keeps every one); return how many. Their records (who, when, why, the diff) stay, but they
    can no longer be rolled back to or downloaded (a large mesh's document is megabytes)."""
    keep = settings.MESH_CONFIG_KEEP_DOCUMENTS if keep is None else keep
    latest = ConfigVersion.objects.order_by("-version").values_list("version", flat=True).first()
    if keep <= 0 or latest is None:
        return 0
    pruned = ConfigVersion.objects.filter(version__lte=latest - keep, pruned=False).update(document=None, pruned=True)
    if pruned:
        log.info("pruned the documents of %d config versions (keeping the newest %d)", pruned, keep)
    return pruned


