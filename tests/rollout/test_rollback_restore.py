"""Rollback restores the database to a version's content, previewed first (issue 12, item 3).

The bug: rolling back to version 6 published 6's content as version 8 while the database still
held version 7's objects, so the next unrelated edit (version 9) published them again. Now the
rollback changes the rows (one audited change set, previewed exactly), and the push after it
publishes the restored database. ``versions`` builds the issue's very sequence: versions 1 to 5,
an edit (6), an edit that adds, changes and deletes objects of every kind (7).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from governance.models import AccessRule, Application, ApplicationKey, RoutingRule
from meshadmin.audit import audit_context
from meshadmin.models import AuditEntry
from meshruntime.config import compute_checksum
from rollout import push, restore
from rollout.compiler import compile_mesh_config
from rollout.models import ConfigVersion, Runtime
from subscriptions.models import Subscription
from tests.portal_support.factories import make_key
from tests.portal_support.mesh import build_mesh
from tests.portal_support.personas import client_for
from topics.models import Topic

pytestmark = pytest.mark.django_db

NON_STAFF = ("alice", "bob", "carol", "dave")


def _describe(mesh, text: str) -> None:
    rule = AccessRule.objects.get(pk=mesh.rules["nobody-audit"].pk)
    rule.description = text
    rule.save()


@pytest.fixture
def versions(mesh_redis, personas):  # noqa: F811
    """Versions 1 to 7 as the issue tells them; returns the mesh, v6, and what v7 made."""
    mesh = build_mesh()
    assert push.push().version == 1
    for n in range(2, 6):
        _describe(mesh, f"edit {n}")
        assert push.push().version == n
    _describe(mesh, "edit 6")
    assert push.push().version == 6

    # Version 7: new objects of every kind, changed ones, a deleted one, a revoked subscription,
    # a revoked key and a new one.
    payments = mesh.payments
    refunds = Topic.objects.create(name="orders.refunded", team=payments, store=mesh.store)
    app = Application.objects.create(name="refunds", team=payments)
    new_key = make_key(app)
    billing_key = make_key(mesh.apps["billing"])
    rule = AccessRule.objects.create(team=payments, principal_kind=AccessRule.APPLICATION, principal_application=app,
                                     topic_pattern="orders.refunded", publish=True)
    sub = Subscription.objects.create(topic=refunds, application=mesh.apps["shipping"], state=Subscription.ACTIVE,
                                      webhook_url="http://shipping.internal/refunds")
    route = RoutingRule.objects.create(team=payments, source_pattern="orders.refunded")
    route.targets.set([mesh.topics["audit.orders"]])
    changed = AccessRule.objects.get(pk=mesh.rules["billing-publish"].pk)
    changed.subscribe = True
    changed.save()
    deleted_pk = mesh.rules["logistics-subscribe"].pk
    AccessRule.objects.get(pk=deleted_pk).delete()
    active = Subscription.objects.get(pk=mesh.subs["active"].pk)
    active.state = Subscription.REVOKED
    active.save()
    topic = Topic.objects.get(pk=mesh.topics["orders.created"].pk)
    topic.retention_max_age = 3600
    topic.save()
    revoked_key = ApplicationKey.objects.get(pk=mesh.keys["billing"].pk)
    revoked_key.revoke()
    assert push.push().version == 7
    made = {"topic": refunds, "app": app, "rule": rule, "sub": sub, "route": route, "deleted_rule": deleted_pk,
            "new_key": new_key, "billing_key": billing_key, "revoked_key": revoked_key}
    return mesh, ConfigVersion.objects.get(version=6), made


def _content(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("version", "checksum", "generated_at")}


def _without_keys(doc: dict) -> dict:
    return {**_content(doc), "applications": [{**a, "keys": []} for a in doc["applications"]]}


def _document(version: int) -> dict:
    return ConfigVersion.objects.get(version=version).document


def rollback(target, user):
    plan = restore.preview(target, user)
    with audit_context(user=user):
        return restore.rollback(target, user, confirm=plan.fingerprint)


# The sequence


def test_rollback_to_6_then_an_unrelated_edit_does_not_bring_back_7s_objects(versions, personas):
    mesh, v6, made = versions
    outcome = rollback(v6, personas["sam"])
    assert outcome.push.as_dict() == {"outcome": "published", "version": 8, "error": ""}
    v8 = ConfigVersion.objects.get(version=8)
    assert (v8.kind, v8.rollback_of, v8.created_by) == (ConfigVersion.ROLLBACK, v6, personas["sam"])
    # The database compiles to 6's content again, keys aside (they are not restored).
    assert _without_keys(v8.document) == _without_keys(v6.document)
    assert _without_keys(compile_mesh_config()) == _without_keys(v6.document)

    _describe(mesh, "an unrelated edit")  # version 9
    v9 = push.push()
    assert v9.version == 9
    doc = _document(9)
    assert "orders.refunded" not in [t["name"] for t in doc["topics"]]
    assert "refunds" not in [a["name"] for a in doc["applications"]]
    ids = {r["id"] for r in doc["access_rules"]} | {r["id"] for r in doc["routing_rules"]}
    assert not {made["rule"].rule_id, made["route"].rule_id, made["sub"].subscription_id} & ids
    assert f"rule-{made['deleted_rule']}" in ids  # 7 deleted it; 6 had it
    assert next(r for r in doc["access_rules"] if r["id"] == mesh.rules["billing-publish"].rule_id)["actions"] == \
        ["publish"]
    assert next(s for s in doc["subscriptions"] if s["id"] == mesh.subs["active"].subscription_id)["state"] == \
        "active"
    # Exactly the edit differs from version 6 (and the keys, which stay as they are).
    assert _without_keys(doc)["access_rules"] != _without_keys(v6.document)["access_rules"]
    expected = _without_keys(v6.document)
    expected["access_rules"] = [{**r, "description": "an unrelated edit"} if r["id"] == mesh.rules["nobody-audit"]
                                .rule_id else r for r in expected["access_rules"]]
    assert _without_keys(doc) == expected


def test_the_rows_are_restored_not_just_the_document(versions, personas):
    mesh, v6, made = versions
    rollback(v6, personas["sam"])
    assert not Topic.objects.filter(name="orders.refunded").exists()
    assert not Application.objects.filter(name="refunds").exists()
    assert not Subscription.objects.filter(pk=made["sub"].pk).exists()
    assert not RoutingRule.objects.filter(pk=made["route"].pk).exists()
    assert not AccessRule.objects.filter(pk=made["rule"].pk).exists()
    recreated = AccessRule.objects.get(pk=made["deleted_rule"])
    assert (recreated.team, recreated.principal_kind, recreated.principal_team) == (
        mesh.logistics, AccessRule.TEAM, mesh.logistics)
    assert Topic.objects.get(name="orders.created").retention_max_age == 86400
    active = Subscription.objects.get(pk=mesh.subs["active"].pk)
    assert (active.state, active.reviewed_by) == (Subscription.ACTIVE, personas["sam"])


def test_keys_are_not_restored_and_the_preview_says_so(versions, personas):
    _, v6, made = versions
    plan = restore.preview(v6, personas["sam"])
    assert restore.KEYS_NOTE in plan.notes
    billing = next(c for c in plan.remaining["applications"]["changed"] if c["id"] == "billing")
    assert made["revoked_key"].prefix in billing["fields"]["keys"]["added"]  # 6 had it; it stays revoked
    assert made["billing_key"].prefix in billing["fields"]["keys"]["removed"]  # made since; it stays
    rollback(v6, personas["sam"])
    assert not ApplicationKey.objects.get(pk=made["revoked_key"].pk).is_active
    assert ApplicationKey.objects.get(pk=made["billing_key"].pk).is_active
    assert not ApplicationKey.objects.filter(pk=made["new_key"].pk).exists()  # its application is gone


# The preview is exact and changes nothing


def test_the_preview_lists_exactly_what_the_restore_does_and_changes_nothing(versions, personas):
    mesh, v6, made = versions
    before = (AuditEntry.objects.count(), ConfigVersion.objects.count(), compute_checksum(compile_mesh_config()))
    plan = restore.preview(v6, personas["sam"])
    assert (AuditEntry.objects.count(), ConfigVersion.objects.count(),
            compute_checksum(compile_mesh_config())) == before
    listed = {(c.action, c.model, c.label) for c in plan.changes}
    assert listed == {
        ("delete", "routing rule", made["route"].rule_id),
        ("delete", "subscription", made["sub"].subscription_id),
        ("delete", "access rule", made["rule"].rule_id),
        ("delete", "application", "refunds"),
        ("delete", "topic", "orders.refunded"),
        ("update", "topic", "orders.created"),
        ("update", "access rule", mesh.rules["billing-publish"].rule_id),
        ("create", "access rule", f"rule-{made['deleted_rule']}"),
        ("update", "subscription", mesh.subs["active"].subscription_id),
    }
    topic = next(c for c in plan.changes if c.label == "orders.created")
    assert topic.fields == (("retention_max_age", 3600, 86400),)
    # The restore does what the preview showed, and the audit log holds it as one change set.
    with audit_context(user=personas["sam"]) as ctx:
        done = restore.rollback(v6, personas["sam"], confirm=plan.fingerprint)
    assert [c.as_dict() for c in done.plan.changes] == [c.as_dict() for c in plan.changes]
    entries = AuditEntry.objects.filter(request_id=ctx.request_id)
    rows = {(e.object_type.model, e.action) for e in entries}
    assert ("topic", "delete") in rows and ("accessrule", "create") in rows and ("configversion", "update") in rows
    assert {e.actor for e in entries} == {personas["sam"]}
    summary = entries.get(object_type__model="configversion", object_id=str(v6.pk))
    assert summary.after["action"] == "restore" and len(summary.after["changes"]) == len(plan.changes)


def test_a_preview_made_stale_by_an_edit_is_refused_and_shown_again(versions, personas):
    mesh, v6, made = versions
    plan = restore.preview(v6, personas["sam"])
    Topic.objects.create(name="orders.late", team=mesh.payments, store=mesh.store)
    with pytest.raises(restore.PlanChanged) as refused:
        restore.rollback(v6, personas["sam"], confirm=plan.fingerprint)
    assert ("delete", "orders.late") in {(c.action, c.label) for c in refused.value.plan.changes}
    assert Topic.objects.filter(name="orders.refunded").exists()  # nothing was restored
    assert ConfigVersion.objects.count() == 7


def test_a_version_without_its_document_cannot_be_restored_and_says_so(versions, personas, settings):
    _, v6, _ = versions
    settings.MESH_CONFIG_KEEP_DOCUMENTS = 1
    push.prune_documents()
    with pytest.raises(restore.RestoreRefused, match="version 6 cannot be rolled back to: its document was pruned"):
        restore.preview(v6, personas["sam"])
    page = client_for(personas["sam"]).get(reverse("rollout:configversion_rollback", args=[v6.pk]))
    assert page.status_code == 200 and 'data-testid="restore-refused"' in page.content.decode()
    assert 'data-testid="restore-confirm"' not in page.content.decode()
    api = client_for(personas["sam"]).get(f"/api/v1/config-versions/{v6.pk}/restore-preview/")
    assert api.status_code == 400 and "pruned" in api.json()["error"]
    refused = client_for(personas["sam"]).post(f"/api/v1/config-versions/{v6.pk}/rollback/", {"confirm": "x"},
                                               content_type="application/json")
    assert refused.status_code == 400 and "pruned" in refused.json()["error"]


# Pages and API, as every persona


@pytest.mark.parametrize("who", NON_STAFF)
def test_only_staff_preview_and_roll_back(versions, personas, who):
    _, v6, _ = versions
    client = client_for(personas[who])
    url = reverse("rollout:configversion_rollback", args=[v6.pk])
    assert client.get(url).status_code == 404
    assert client.post(url, {"confirm": restore.preview(v6, personas["sam"]).fingerprint}).status_code == 404
    assert client.get(f"/api/v1/config-versions/{v6.pk}/restore-preview/").status_code == 404
    assert client.post(f"/api/v1/config-versions/{v6.pk}/rollback/", {"confirm": "x"},
                       content_type="application/json").status_code == 404
    assert 'data-testid="rollback"' not in client.get(v6.get_absolute_url()).content.decode()
    assert ConfigVersion.objects.count() == 7 and Topic.objects.filter(name="orders.refunded").exists()


def test_anonymous_visitors_cannot_roll_back(versions, client):
    _, v6, _ = versions
    url = reverse("rollout:configversion_rollback", args=[v6.pk])
    assert client.get(url)["Location"].startswith("/login/")
    assert client.post(f"/api/v1/config-versions/{v6.pk}/rollback/").status_code == 401


def test_staff_preview_then_confirm_on_the_pages(versions, personas):
    _, v6, made = versions
    sam = client_for(personas["sam"])
    assert 'data-testid="rollback"' in sam.get(v6.get_absolute_url()).content.decode()
    page = sam.get(reverse("rollout:configversion_rollback", args=[v6.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and 'data-testid="restore-delete"' in html and "orders.refunded" in html
    assert "Application keys are not restored" in html
    fingerprint = html.split('name="confirm" value="')[1].split('"')[0]
    assert sam.post(reverse("rollout:configversion_rollback", args=[v6.pk]), {"confirm": "stale"}).status_code \
        == 409
    assert Topic.objects.filter(name="orders.refunded").exists()
    response = sam.post(reverse("rollout:configversion_rollback", args=[v6.pk]), {"confirm": fingerprint})
    v8 = ConfigVersion.objects.get(version=8)
    assert response.status_code == 302 and response["Location"] == v8.get_absolute_url()
    assert v8.rollback_of == v6 and not Topic.objects.filter(name="orders.refunded").exists()
    entry = AuditEntry.objects.get(object_type__model="configversion", object_id=str(v8.pk))
    assert entry.actor == personas["sam"] and entry.after["kind"] == "rollback"


def test_staff_preview_then_confirm_through_the_api(versions, personas):
    _, v6, _ = versions
    sam = client_for(personas["sam"])
    preview = sam.get(f"/api/v1/config-versions/{v6.pk}/restore-preview/").json()
    assert preview["summary"] == "1 created, 3 changed, 5 deleted" and preview["version"] == 6
    assert sam.post(f"/api/v1/config-versions/{v6.pk}/rollback/", {}, content_type="application/json") \
        .status_code == 400  # no preview confirmed
    stale = sam.post(f"/api/v1/config-versions/{v6.pk}/rollback/", {"confirm": "stale"},
                     content_type="application/json")
    assert stale.status_code == 409 and stale.json()["confirm"] == preview["confirm"]
    done = sam.post(f"/api/v1/config-versions/{v6.pk}/rollback/", {"confirm": preview["confirm"]},
                    content_type="application/json")
    assert done.status_code == 201 and done.json()["version"] == 8
    assert done.json()["restore"]["changes"] == preview["changes"]
    for bad in ("null,null", "true"):
        assert sam.post(f"/api/v1/config-versions/{bad}/rollback/", {"confirm": "x"},
                        content_type="application/json").status_code == 404


def test_a_restore_of_the_content_the_database_holds_changes_nothing(versions, personas):
    _, _, _ = versions
    v7 = ConfigVersion.objects.get(version=7)
    plan = restore.preview(v7, personas["sam"])
    assert plan.changes == [] and plan.summary == "nothing to change"
    outcome = rollback(v7, personas["sam"])
    assert outcome.push.outcome == "unchanged" and ConfigVersion.objects.count() == 7


# Drift on the runtime's page


@pytest.mark.parametrize("who", [*NON_STAFF, "sam"])
def test_a_runtime_page_shows_what_changed_since_the_version_it_runs(versions, personas, who):
    mesh, v6, made = versions
    runtime = Runtime.objects.create(runtime_id="billing-1", application="billing", config_version=6,
                                     last_seen=timezone.now())
    html = client_for(personas[who]).get(runtime.get_absolute_url()).content.decode()
    drift = html.split('data-testid="drift"')[1].split("</div>")[0]
    assert "orders.refunded" in drift and made["rule"].rule_id in drift and made["route"].rule_id in drift
    assert reverse("governance:accessrule", args=[made["rule"].pk]) in drift
    assert made["new_key"].sha256 not in html and made["billing_key"].sha256 not in html
    Runtime.objects.filter(pk=runtime.pk).update(config_version=7)
    html = client_for(personas[who]).get(runtime.get_absolute_url()).content.decode()
    assert "Nothing changed in the database since version 7" in html


def test_drift_cannot_be_shown_for_a_pruned_version(versions, personas, settings):
    settings.MESH_CONFIG_KEEP_DOCUMENTS = 1
    push.prune_documents()
    runtime = Runtime.objects.create(runtime_id="old-1", application="billing", config_version=3,
                                     last_seen=timezone.now() - timedelta(seconds=1))
    html = client_for(personas["carol"]).get(runtime.get_absolute_url()).content.decode()
    assert "Version 3&#x27;s document was pruned: the drift cannot be shown." in html


# Rows the document alone does not describe


@pytest.fixture
def base(mesh_redis, personas):  # noqa: F811
    mesh = build_mesh()
    return mesh, ConfigVersion.objects.get(version=push.push().version)


def test_a_renamed_topic_gets_its_old_name_back(base, personas):
    mesh, v1 = base
    topic = Topic.objects.get(name="audit.orders")
    topic.name = "audit.orders-v2"
    topic.save()
    plan = restore.preview(v1, personas["sam"])
    [change] = [c for c in plan.changes if c.model == "topic"]
    assert (change.action, change.label, change.note) == ("update", "audit.orders", "renamed back from audit.orders-v2")
    rollback(v1, personas["sam"])
    assert Topic.objects.get(pk=topic.pk).name == "audit.orders"


def test_a_deleted_topic_is_recreated_with_its_team_from_the_audit_log(base, personas):
    mesh, v1 = base
    spare = Topic.objects.create(name="orders.spare", team=mesh.logistics, store=mesh.store, description="spare")
    v2 = ConfigVersion.objects.get(version=push.push().version)
    spare.delete()
    push.push()
    rollback(v2, personas["sam"])
    again = Topic.objects.get(name="orders.spare")
    assert (again.team, again.description) == (mesh.logistics, "spare")


def test_a_row_the_audit_log_never_saw_is_not_guessed(base, personas):
    mesh, _ = base
    [ghost] = Topic.objects.bulk_create([Topic(name="orders.ghost", team=mesh.payments, store=mesh.store)])
    v2 = ConfigVersion.objects.get(version=push.push().version)
    with connection.cursor() as cursor:  # gone without a trace (say, before the audit log existed)
        cursor.execute("DELETE FROM topics_topic WHERE id = %s", [ghost.pk])
    push.push()
    plan = restore.preview(v2, personas["sam"])
    assert "Topic orders.ghost is not recreated: the audit log does not say which team owned it." in plan.notes
    assert plan.remaining["topics"]["added"] == ["orders.ghost"]


def test_a_subscription_approved_since_goes_back_to_requested(base, personas):
    mesh, v1 = base
    sub = Subscription.objects.get(pk=mesh.subs["requested"].pk)
    sub.approve(by=personas["sam"])
    push.push()
    plan = restore.preview(v1, personas["sam"])
    [change] = [c for c in plan.changes if c.label == sub.subscription_id]
    assert change.fields == (("state", "active", "requested"),) and change.note == "its state in version 1"
    rollback(v1, personas["sam"])
    assert Subscription.objects.get(pk=sub.pk).state == Subscription.REQUESTED


def test_a_routing_rule_revoked_since_is_approved_again_by_the_rollback_and_says_so(base, personas):
    mesh, v1 = base
    route = RoutingRule.objects.get(pk=mesh.routes["audit"].pk)
    route.transition("revoke", by=personas["sam"])
    push.push()
    plan = restore.preview(v1, personas["sam"])
    [change] = [c for c in plan.changes if c.label == route.rule_id]
    assert "it is revoked now: the rollback approves it again for Logistics, as sam" in change.note
    rollback(v1, personas["sam"])
    route.refresh_from_db()
    assert (route.state, route.reviewed_by) == (RoutingRule.APPROVED, personas["sam"])
    assert route.rule_id in [r["id"] for r in compile_mesh_config()["routing_rules"]]


def test_a_signing_secret_is_restored_but_never_shown(base, personas):
    mesh, v1 = base
    sub = Subscription.objects.get(pk=mesh.subs["active"].pk)
    old_secret = sub.signing_secret
    sub.signing_secret = "whsec_rotated"
    sub.save()
    push.push()
    plan = restore.preview(v1, personas["sam"])
    assert ("signing_secret", "(redacted)", "(redacted)") in next(c for c in plan.changes
                                                                  if c.label == sub.subscription_id).fields
    html = client_for(personas["sam"]).get(reverse("rollout:configversion_rollback", args=[v1.pk])).content
    assert old_secret.encode() not in html and b"whsec_rotated" not in html
    rollback(v1, personas["sam"])
    assert Subscription.objects.get(pk=sub.pk).signing_secret == old_secret


def test_a_deleted_subscription_and_application_come_back_keys_aside(base, personas):
    mesh, v1 = base
    spare = Application.objects.create(name="spare", team=mesh.logistics, description="kept for later")
    make_key(spare)
    sub = Subscription.objects.get(pk=mesh.subs["paused"].pk)
    sub_id = sub.subscription_id
    v2 = ConfigVersion.objects.get(version=push.push().version)
    Subscription.objects.get(pk=sub.pk).delete()
    spare.delete()
    push.push()
    plan = restore.preview(v2, personas["sam"])
    notes = {c.label: c.note for c in plan.changes if c.action == "create"}
    assert notes == {"spare": "recreated without keys (keys are not restored)",
                     sub_id: "recreated from the version (its signing secret too)"}
    rollback(v2, personas["sam"])
    again = Subscription.objects.get(pk=sub.pk)
    assert (again.state, again.signing_secret, again.delivery_mode) == ("paused", sub.signing_secret, "structured")
    assert Application.objects.get(name="spare").description == "kept for later"
    assert not ApplicationKey.objects.filter(application__name="spare").exists()
