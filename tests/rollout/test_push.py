"""The push protocol against the real Redis: commit hook, coalescing, versions, reconcile, rollback.

These call rollout.push directly (and look at the broker's queue); the whole path through a
real Celery worker is tests/rollout/test_push_e2e.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import orjson
import pytest
from celery.exceptions import Retry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from governance.models import AccessRule, RoutingRule
from meshadmin.audit import audit_context
from meshadmin.models import AuditEntry
from meshruntime.config import DEFAULT_MAX_DOCUMENT_BYTES, compute_checksum, parse_document, seal
from meshruntime.patch import Applied
from rollout import limits, push
from rollout.compiler import compile_mesh_config
from rollout.models import ConfigVersion
from rollout.registry import HeartbeatIngester, stream_key
from rollout.tasks import push_config, reconcile_config
from subscriptions.models import Subscription
from tests.portal_support.mesh import BROKER_PREFIX, build_mesh
from topics.models import Topic

pytestmark = pytest.mark.django_db



def queued_tasks(client, settings) -> int:
    return client.llen(f"{BROKER_PREFIX}{settings.MESH_PUSH_QUEUE}")


def published(client, prefix: str) -> dict:
    return published_version(client, prefix, int(client.get(f"{prefix}config:latest")))


def published_version(client, prefix: str, version: int) -> dict:
    return parse_document(client.get(f"{prefix}config:{version}"))


def reset_push_state(client, settings) -> None:
    prefix = settings.MESH_KEY_PREFIX
    client.delete(f"{prefix}push:pending", f"{prefix}push:changes", f"{prefix}push:recent",
                  f"{BROKER_PREFIX}{settings.MESH_PUSH_QUEUE}")


@pytest.fixture
def mesh(db, mesh_redis, settings, payments, logistics):
    return build_mesh()


# The commit hook, with real commits


@pytest.fixture
def committed_mesh(transactional_db, mesh_redis, settings):
    """The mesh, committed; its own push requests cleared, as if a push had just run."""
    built = build_mesh()
    reset_push_state(mesh_redis, settings)
    return built


def test_a_transaction_enqueues_one_task_however_many_rows_change(committed_mesh, mesh_redis, settings):
    alice = User.objects.create_user("alice")
    with audit_context(user=alice), transaction.atomic():
        for rule in AccessRule.objects.all():
            rule.description = "reviewed"
            rule.save()
        Topic.objects.create(name="orders.cancelled", team=committed_mesh.payments, store=committed_mesh.store)
        # Nothing before the commit.
        assert not mesh_redis.exists(f"{settings.MESH_KEY_PREFIX}push:pending")
    changes = [json.loads(c) for c in mesh_redis.lrange(f"{settings.MESH_KEY_PREFIX}push:changes", 0, -1)]
    assert [(c["action"], c["type"], c["actor"]) for c in changes] == \
        [("update", "access rule", "alice")] * 3 + [("create", "topic", "alice")]
    assert mesh_redis.exists(f"{settings.MESH_KEY_PREFIX}push:pending")
    assert queued_tasks(mesh_redis, settings) == 1


def test_five_hundred_commits_while_a_task_is_pending_make_one_task_and_one_version(committed_mesh, mesh_redis,
                                                                                   settings):
    push.push()
    rule = AccessRule.objects.get(pk=committed_mesh.rules["billing-publish"].pk)
    for i in range(500):
        rule.description = f"change {i}"
        rule.save()  # each its own commit
    assert queued_tasks(mesh_redis, settings) == 1
    assert mesh_redis.llen(f"{settings.MESH_KEY_PREFIX}push:changes") == 500
    assert push.push().version == 2  # what the one task does
    version = ConfigVersion.objects.get(version=2)
    assert len(version.changes) == 500 and version.changes[-1]["object"] == str(rule)
    compiled = {r["id"]: r for r in version.document["access_rules"]}
    assert compiled[rule.rule_id]["description"] == "change 499"
    assert compute_checksum(compile_mesh_config()) == version.checksum


def queued_eta(client, settings) -> datetime | None:
    """When the queued push task is due (its ETA; None: at once), from the message on the broker."""
    message = json.loads(client.lindex(f"{BROKER_PREFIX}{settings.MESH_PUSH_QUEUE}", 0))
    eta = message["headers"]["eta"]
    return None if eta is None else datetime.fromisoformat(eta)


def test_a_change_after_a_quiet_spell_goes_at_once_and_a_burst_waits(committed_mesh, mesh_redis, settings):
    settings.MESH_PUSH_DELAY_MS, settings.MESH_PUSH_BURST_DELAY_MS = 0, 1000
    settings.MESH_PUSH_BURST_WINDOW_MS = 60_000  # the test's steps all fall in it
    rule = AccessRule.objects.get(pk=committed_mesh.rules["billing-publish"].pk)

    def change_and_eta(description: str) -> tuple[datetime, datetime | None, datetime]:
        before = timezone.now()
        rule.description = description
        rule.save()
        return before, queued_eta(mesh_redis, settings), timezone.now()

    assert change_and_eta("quiet")[1] is None  # nothing published lately: due at once

    push.push()  # a version now: a change within the window is part of a burst
    # As if the quiet change's task had run: no task pending, and ``push:recent`` left as it is.
    mesh_redis.delete(f"{settings.MESH_KEY_PREFIX}push:pending", f"{BROKER_PREFIX}{settings.MESH_PUSH_QUEUE}")
    assert mesh_redis.pttl(f"{settings.MESH_KEY_PREFIX}push:recent") > 0
    before, eta, after = change_and_eta("in a burst")
    assert before + timedelta(seconds=1) <= eta <= after + timedelta(seconds=1)

    # A change while a push runs is part of a burst too, however long that push takes.
    mesh_redis.delete(f"{settings.MESH_KEY_PREFIX}push:pending", f"{settings.MESH_KEY_PREFIX}push:recent",
                      f"{BROKER_PREFIX}{settings.MESH_PUSH_QUEUE}")
    with push.push_lock():
        before, eta, after = change_and_eta("while a push runs")
    assert before + timedelta(seconds=1) <= eta <= after + timedelta(seconds=1)


def test_a_change_after_a_push_has_started_enqueues_a_new_task(committed_mesh, mesh_redis, settings):
    Topic.objects.create(name="before.push", team=committed_mesh.payments, store=committed_mesh.store)
    push._take_changes()  # what a push does before it reads the database
    Topic.objects.create(name="after.push", team=committed_mesh.payments, store=committed_mesh.store)
    assert queued_tasks(mesh_redis, settings) == 2


def test_a_rolled_back_transaction_enqueues_nothing(committed_mesh, mesh_redis, settings):
    with pytest.raises(RuntimeError), transaction.atomic():
        Topic.objects.create(name="never.committed", team=committed_mesh.payments, store=committed_mesh.store)
        raise RuntimeError
    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():  # a savepoint rolled back ...
            Topic.objects.create(name="never.either", team=committed_mesh.payments, store=committed_mesh.store)
            raise RuntimeError
        assert queued_tasks(mesh_redis, settings) == 0
        Topic.objects.create(name="but.this", team=committed_mesh.payments, store=committed_mesh.store)
    # ... does not take the next change of the same transaction with it.
    assert queued_tasks(mesh_redis, settings) == 1
    changes = [json.loads(c)["object"] for c in mesh_redis.lrange(f"{settings.MESH_KEY_PREFIX}push:changes", 0, -1)]
    assert changes == ["but.this"]


def test_saving_an_unrelated_model_enqueues_nothing(committed_mesh, mesh_redis, settings):
    AuditEntry.objects.create(action="create", object_type=ContentType.objects.get_for_model(Topic),
                              object_id="1", object_repr="x")
    User.objects.create_user("someone")
    assert queued_tasks(mesh_redis, settings) == 0


# Push


def test_push_records_a_version_and_publishes_it(mesh, mesh_redis, settings):
    result = push.push()
    assert result.outcome == "published" and result.version == 1
    version = ConfigVersion.objects.get()
    doc = published(mesh_redis, settings.MESH_KEY_PREFIX)
    assert doc["version"] == version.version == 1
    assert doc["checksum"] == version.checksum == version.source_checksum == compute_checksum(compile_mesh_config())
    assert version.document == doc and version.published_at is not None
    assert version.diff["topics"]["added"] == ["audit.orders", "orders.created", "orders.shipped"]
    assert version.kind == ConfigVersion.RECONCILE  # no recorded change led to it
    assert push.last_status()["outcome"] == "published"


def test_an_unchanged_database_makes_no_new_version(mesh, mesh_redis):
    push.push()
    assert push.push().as_dict() == {"outcome": "unchanged", "version": 1, "error": ""}
    Topic.objects.filter(name="orders.created").update(description="words the document does not carry")
    assert push.push().outcome == "unchanged"
    assert ConfigVersion.objects.count() == 1


def test_a_version_says_who_changed_what(committed_mesh, mesh_redis):
    mesh = committed_mesh
    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    push.push()
    rule = mesh.rules["billing-publish"]
    with audit_context(user=alice):
        rule.subscribe = True
        rule.save()
    with audit_context(user=bob):
        Topic.objects.create(name="orders.cancelled", team=mesh.payments, store=mesh.store)
    assert push.push().outcome == "published"
    version = ConfigVersion.objects.get(version=2)
    assert version.kind == ConfigVersion.PUSH
    assert version.actor_name == "alice, bob" and version.created_by is None
    assert [(c["actor"], c["action"], c["type"]) for c in version.changes] == \
        [("alice", "update", "access rule"), ("bob", "create", "topic")]
    assert version.reason == f"topics: 1 added (orders.cancelled); access rules: 1 changed ({rule.rule_id})"


def test_an_invalid_document_is_not_published_and_the_error_is_kept(committed_mesh, mesh_redis, settings):
    mesh = committed_mesh
    push.push()
    sub = mesh.subs["active"]
    # No form lets this through (Subscription.clean refuses it); a bulk update does, without a signal.
    Subscription.objects.filter(pk=sub.pk).update(filters=[{"sql": "1 = 1"}])
    mesh.topics["orders.created"].save()  # some other change is pending with it
    result = push.push()
    assert result.outcome == "failed" and result.error.startswith("subscriptions[0].filters")
    assert ConfigVersion.objects.count() == 1
    assert int(mesh_redis.get(f"{settings.MESH_KEY_PREFIX}config:latest")) == 1
    assert push.last_status()["error"] == result.error
    # The change is kept for the version that will carry it.
    assert mesh_redis.llen(f"{settings.MESH_KEY_PREFIX}push:changes") == 1
    Subscription.objects.filter(pk=sub.pk).update(filters=[])
    assert push.push().outcome == "published"
    assert len(ConfigVersion.objects.get(version=2).changes) == 1


def _beat_limit(client, runtime_id: str, max_config_bytes: int, sent_at=None) -> None:
    """A heartbeat of ``runtime_id`` reporting its ``--max-config-bytes``, ingested as the portal does."""
    sent = (sent_at or timezone.now()).isoformat().replace("+00:00", "Z")
    client.xadd(stream_key(), {"runtime_id": runtime_id, "sent_at": sent, "max_config_bytes": str(max_config_bytes)})
    ingester = HeartbeatIngester(client, consumer="test", block_ms=10)
    ingester.ensure_group()
    ingester.step()


def _next_document_size(version: int) -> int:
    """The length of the document the next push seals, as Redis would hold it."""
    return len(orjson.dumps(seal(compile_mesh_config(), version)))


def test_a_document_over_a_live_runtimes_size_limit_is_not_announced_and_says_why(mesh, mesh_redis, settings):
    prefix = settings.MESH_KEY_PREFIX
    push.push()
    Topic.objects.create(name="orders.cancelled", team=mesh.payments, store=mesh.store)
    size = _next_document_size(2)
    _beat_limit(mesh_redis, "rt-small", size - 1)
    _beat_limit(mesh_redis, "rt-roomy", size)  # exactly its length: accepted
    _beat_limit(mesh_redis, "rt-gone", 1, sent_at=timezone.now() - timedelta(hours=1))  # gone: not asked

    result = push.push()

    assert result.outcome == "failed"
    assert result.error == (f"the document is {size:,} bytes, over the limit of {size - 1:,} of runtime rt-small "
                            "(--max-config-bytes)")
    assert push.last_status()["error"] == result.error
    assert ConfigVersion.objects.count() == 1
    assert int(mesh_redis.get(f"{prefix}config:latest")) == 1 and not mesh_redis.exists(f"{prefix}config:2")


def test_a_document_within_every_live_runtimes_size_limit_is_announced(mesh, mesh_redis, settings):
    push.push()
    Topic.objects.create(name="orders.cancelled", team=mesh.payments, store=mesh.store)
    _beat_limit(mesh_redis, "rt-1", _next_document_size(2))
    result = push.push()
    assert (result.outcome, result.version) == ("published", 2)
    assert published(mesh_redis, settings.MESH_KEY_PREFIX)["version"] == 2


def test_the_size_message_names_the_smallest_limit_and_counts_the_others():
    assert limits.size_problem(100, {"a": 100, "b": 200}) == ""
    assert limits.size_problem(1000, {"a": 500, "b": 500, "c": 900, "d": 2000}) == (
        "the document is 1,000 bytes, over the limit of 500 of runtimes a, b (--max-config-bytes); "
        "1 more runtime with a higher limit refuses it too")
    default = DEFAULT_MAX_DOCUMENT_BYTES
    assert limits.size_problem(default, {}) == ""
    assert limits.size_problem(default + 1, {}) == (
        f"the document is {default + 1:,} bytes, over the default limit of {default:,} of the runtimes "
        "(--max-config-bytes; no live runtime reports its own)")


def test_versions_never_go_below_what_redis_announced(mesh, mesh_redis, settings):
    mesh_redis.set(f"{settings.MESH_KEY_PREFIX}config:latest", 41)
    assert push.push().version == 42


# Reconcile


def test_reconcile_repairs_an_emptied_redis(mesh, mesh_redis, settings):
    push.push()
    for key in mesh_redis.scan_iter(match=f"{settings.MESH_KEY_PREFIX}*"):
        mesh_redis.delete(key)
    assert reconcile_config() == {"outcome": "republished", "version": 1, "error": ""}
    assert published(mesh_redis, settings.MESH_KEY_PREFIX)["version"] == 1
    assert reconcile_config()["outcome"] == "unchanged"


def test_reconcile_publishes_a_change_that_sent_no_signal(mesh, mesh_redis):
    push.push()
    AccessRule.objects.filter(pk=mesh.rules["nobody-audit"].pk).update(effect=AccessRule.ALLOW)  # no signal
    assert reconcile_config()["outcome"] == "published"
    version = ConfigVersion.objects.get(version=2)
    assert version.kind == ConfigVersion.RECONCILE and version.actor_name == "system"
    assert version.diff["access_rules"]["changed"][0]["fields"] == {"effect": {"before": "deny", "after": "allow"}}


def test_reconcile_is_skipped_while_a_push_runs_and_the_task_retries(mesh, mesh_redis):
    with push.push_lock():
        assert reconcile_config() == {"outcome": "skipped"}
        with pytest.raises(Retry):
            push_config.apply(throw=True)
    assert ConfigVersion.objects.count() == 0


# Patches and snapshots


def _change_rule(mesh, **fields):
    AccessRule.objects.filter(pk=mesh.rules["billing-publish"].pk).update(**fields)


def test_each_version_comes_with_the_patch_from_the_one_before(mesh, mesh_redis, settings, sam):
    prefix = settings.MESH_KEY_PREFIX
    push.push()
    assert not mesh_redis.exists(f"{prefix}config:1:patch")  # nothing to patch from
    _change_rule(mesh, subscribe=True)
    push.push()
    _change_rule(mesh, subscribe=False)  # back to version 1's content
    push.push()
    applied = Applied.of(parse_document(mesh_redis.get(f"{prefix}config:1")))
    for version in (2, 3):  # a change, then its undoing
        patch = json.loads(mesh_redis.get(f"{prefix}config:{version}:patch"))
        assert set(patch["sections"]) == {"access_rules"}
        applied = applied.apply(patch)
        assert applied.document == published_version(mesh_redis, prefix, version)


def test_old_snapshots_leave_redis_but_every_version_stays(mesh, mesh_redis, settings, monkeypatch):
    monkeypatch.setattr(push, "KEEP_SNAPSHOTS", 2)
    for order in range(4):
        RoutingRuleOrder = mesh.routes["audit"].__class__
        RoutingRuleOrder.objects.filter(pk=mesh.routes["audit"].pk).update(order=order)
        push.push()
    prefix = settings.MESH_KEY_PREFIX
    assert [bool(mesh_redis.exists(f"{prefix}config:{v}")) for v in (1, 2, 3, 4)] == [False, False, True, True]
    assert [bool(mesh_redis.exists(f"{prefix}config:{v}:patch")) for v in (2, 3, 4)] == [False, True, True]
    assert ConfigVersion.objects.count() == 4


# Validation in proportion to the change


CORRUPTIONS = {
    # What no form lets through but a bulk update (or a bug) could: each must be refused.
    "subscription filters": lambda m: Subscription.objects.filter(pk=m.subs["active"].pk).update(
        filters=[{"sql": "TRUE"}]),
    "routing filters": lambda m: RoutingRule.objects.filter(pk=m.routes["audit"].pk).update(
        filters=[{"exact": {"type": 1}}]),
    "topic schema": lambda m: Topic.objects.filter(pk=m.topics["audit.orders"].pk).update(
        data_schema={"type": "no-such-type"}),
    "webhook url": lambda m: Subscription.objects.filter(pk=m.subs["paused"].pk).update(webhook_url="ftp://x/"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_the_changed_part_is_refused_exactly_where_the_whole_document_is(mesh, mesh_redis, monkeypatch,
                                                                         corruption):
    from meshruntime.config import ConfigError, seal, validate_document

    push.push()
    monkeypatch.setattr(push, "_checked_whole", True)
    CORRUPTIONS[corruption](mesh)
    result = push.push()
    assert result.outcome == "failed"
    with pytest.raises(ConfigError) as whole:
        validate_document(seal(compile_mesh_config(), 9))
    assert result.error == str(whole.value)  # same verdict, same path (in the whole document)


def test_the_changed_part_carries_what_its_entries_refer_to(mesh, mesh_redis):
    from meshruntime.config import seal
    from rollout.diff import changed_part, diff_documents

    before = seal(compile_mesh_config(), 1)
    sub = mesh.subs["active"]
    Subscription.objects.filter(pk=sub.pk).update(filters=[])
    mesh.routes["audit"].targets.add(mesh.topics["orders.shipped"])
    after = seal(compile_mesh_config(), 2)
    part = changed_part(after, diff_documents(before, after))
    assert [s["id"] for s in part["subscriptions"]] == [sub.subscription_id]
    assert [t["name"] for t in part["topics"]] == ["audit.orders", "orders.created", "orders.shipped"]
    assert [a["name"] for a in part["applications"]] == ["shipping"]
    assert [r["id"] for r in part["routing_rules"]] == [mesh.routes["audit"].rule_id]
    assert part["access_rules"] == [] and part["stores"] == after["stores"]


def test_the_first_push_of_a_process_checks_the_whole_document(mesh, mesh_redis, monkeypatch):
    """After a deployment the contract may refuse an entry that has not changed in a while."""
    v1 = ConfigVersion.objects.get(version=push.push().version)
    # An entry that went bad without changing (here: made bad in the database and in version 1).
    Subscription.objects.filter(pk=mesh.subs["active"].pk).update(filters=[{"sql": "TRUE"}])
    document = v1.document
    document["subscriptions"][0]["filters"] = [{"sql": "TRUE"}]
    ConfigVersion.objects.filter(pk=v1.pk).update(document=document)
    monkeypatch.setattr(push, "_last_document", None)
    Topic.objects.create(name="orders.cancelled", team=mesh.payments, store=mesh.store)
    monkeypatch.setattr(push, "_checked_whole", True)  # a process that has checked a whole one
    assert push.push().outcome == "published"  # the part does not include the bad entry
    monkeypatch.setattr(push, "_checked_whole", False)  # a fresh process
    Topic.objects.create(name="orders.returned", team=mesh.payments, store=mesh.store)
    result = push.push()
    assert result.outcome == "failed" and result.error.startswith("subscriptions[0].filters")


def test_beat_reconciles_within_a_minute(settings):
    from meshadmin.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["reconcile-mesh-config"]
    assert entry["task"] in app.tasks and entry["task"] == reconcile_config.name
    assert entry["schedule"] <= 30  # a lost push or an emptied Redis is repaired within a minute
