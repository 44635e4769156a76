"""Config versions and runtimes: pages, API, permissions (staff push and roll back; everyone signed
in looks), and ``manage.py mesh``."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from governance.models import AccessRule
from meshadmin.models import AuditEntry
from meshruntime.config import compute_checksum, validate_document
from rollout import push
from rollout.compiler import compile_mesh_config
from rollout.models import ConfigVersion, Runtime
from subscriptions.models import Subscription
from tests.portal_support.mesh import build_mesh
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions(mesh_redis, personas):
    """Versions 1 and 2 (an access rule changed in between) and two runtimes, one behind."""
    mesh = build_mesh()
    push.push()
    AccessRule.objects.filter(pk=mesh.rules["billing-publish"].pk).update(subscribe=True)
    push.push()
    now = timezone.now()
    Runtime.objects.create(runtime_id="billing-1", application="billing", host="node-1", config_version=2,
                           last_seen=now)
    Runtime.objects.create(runtime_id="shipping-1", application="shipping", host="node-2", config_version=1,
                           last_error="config version 2 refused: checksum: no match; keeping version 1",
                           last_seen=now)
    return mesh, ConfigVersion.objects.get(version=1), ConfigVersion.objects.get(version=2)


# Pages


def test_everyone_signed_in_sees_versions_and_runtimes_but_only_staff_get_the_buttons(versions, personas):
    _, v1, _ = versions
    for name in ("carol", "sam"):
        client = client_for(personas[name])
        listing = client.get(reverse("rollout:configversion_list")).content.decode()
        assert listing.count('data-testid="configversion-row"') == 2
        detail = client.get(v1.get_absolute_url()).content.decode()
        staff = name == "sam"
        assert ('data-testid="push-now"' in listing) is staff
        assert ('data-testid="rollback"' in detail) is staff


def test_the_version_page_shows_the_diff_and_the_convergence(versions, personas):
    mesh, _, v2 = versions
    html = client_for(personas["dave"]).get(v2.get_absolute_url()).content.decode()
    assert mesh.rules["billing-publish"].rule_id in html and "changed" in html
    assert 'data-testid="convergence"' in html
    assert '<span id="applied-count">1</span> of <span id="runtime-count">2</span>' in html


def test_the_runtimes_page_shows_health_convergence_and_errors(versions, personas):
    html = client_for(personas["carol"]).get(reverse("rollout:runtime_list")).content.decode()
    assert html.count('data-testid="runtime-row"') == 2
    assert "in sync" in html and "error" in html and "checksum: no match" in html
    assert "/ws/runtimes/" in html
    runtime = Runtime.objects.get(runtime_id="shipping-1")
    page = client_for(personas["carol"]).get(runtime.get_absolute_url()).content.decode()
    assert "config version 2 refused" in page


def test_staff_push_now_and_others_are_refused(versions, personas):
    mesh, _, _ = versions
    AccessRule.objects.filter(pk=mesh.rules["nobody-audit"].pk).update(description="changed")
    assert client_for(personas["bob"]).post(reverse("rollout:config_push")).status_code == 403
    assert ConfigVersion.objects.count() == 2
    response = client_for(personas["sam"]).post(reverse("rollout:config_push"))
    v3 = ConfigVersion.objects.get(version=3)
    assert response.status_code == 302 and response["Location"] == v3.get_absolute_url()
    assert (v3.kind, v3.created_by, v3.actor_name) == (ConfigVersion.MANUAL, personas["sam"], "sam")


def test_a_failed_push_is_shown_on_the_versions_page(versions, personas):
    mesh, _, _ = versions
    Subscription.objects.filter(pk=mesh.subs["active"].pk).update(filters=[{"sql": "TRUE"}])
    assert push.push().outcome == "failed"
    html = client_for(personas["carol"]).get(reverse("rollout:configversion_list")).content.decode()
    assert 'data-testid="push-error"' in html and "subscriptions[0].filters" in html


def test_a_push_over_a_runtimes_size_limit_is_shown_on_the_versions_page(versions, personas):
    mesh, _, _ = versions
    Runtime.objects.filter(runtime_id="billing-1").update(max_config_bytes=1000)
    AccessRule.objects.filter(pk=mesh.rules["nobody-audit"].pk).update(effect=AccessRule.ALLOW)
    assert push.push().outcome == "failed"
    html = client_for(personas["carol"]).get(reverse("rollout:configversion_list")).content.decode()
    assert 'data-testid="push-error"' in html and "over the limit of 1,000 of runtime billing-1" in html
    page = client_for(personas["carol"]).get(Runtime.objects.get(runtime_id="billing-1").get_absolute_url())
    assert "1000\xa0bytes" in page.content.decode()


def test_the_document_download_hides_signing_secrets(versions, personas):
    mesh, v1, _ = versions
    response = client_for(personas["sam"]).get(reverse("rollout:configversion_document", args=[v1.pk]))
    assert response.status_code == 200
    assert mesh.subs["active"].signing_secret not in response.content.decode()
    assert {s["secret"] for s in response.json()["subscriptions"]} == {"(redacted)"}


def test_old_documents_are_pruned_but_their_records_stay_and_they_cannot_be_rolled_back_to(versions, personas,
                                                                                          settings):
    _, v1, v2 = versions
    settings.MESH_CONFIG_KEEP_DOCUMENTS = 1
    assert push.prune_documents() == 1 and push.prune_documents() == 0
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.pruned, v1.document, v1.checksum) == (True, None, v1.checksum) and v1.diff
    assert not v2.pruned and v2.document["version"] == 2
    sam = client_for(personas["sam"])
    detail = sam.get(v1.get_absolute_url()).content.decode()
    assert 'data-testid="pruned"' in detail and 'data-testid="rollback"' not in detail
    assert "pruned" in sam.get(reverse("rollout:configversion_list")).content.decode()
    response = sam.get(reverse("rollout:configversion_document", args=[v1.pk]))
    assert response.status_code == 410 and "pruned" in response.json()["detail"]
    assert sam.get(f"/api/v1/config-versions/{v1.pk}/document/").status_code == 410
    assert sam.get(f"/api/v1/config-versions/{v1.pk}/").json()["pruned"] is True
    refused = sam.post(f"/api/v1/config-versions/{v1.pk}/rollback/")
    assert refused.status_code == 400
    assert refused.json()["error"] == ("version 1 cannot be rolled back to: its document was pruned (only the "
                                       "newest 1 versions keep theirs)")
    assert ConfigVersion.objects.count() == 2


def test_pruning_keeps_every_document_when_told_to_and_runs_hourly(versions, settings):
    settings.MESH_CONFIG_KEEP_DOCUMENTS = 0
    assert push.prune_documents() == 0 and not ConfigVersion.objects.filter(pruned=True).exists()
    assert settings.CELERY_BEAT_SCHEDULE["prune-config-documents"]["task"] == "rollout.tasks.prune_config_documents"


# API


def test_api_lists_versions_and_runtimes(versions, personas):
    client = client_for(personas["carol"])
    body = client.get("/api/v1/config-versions/").json()
    assert [v["version"] for v in body["results"]] == [2, 1]
    detail = client.get(f"/api/v1/config-versions/{body['results'][0]['id']}/").json()
    assert "access_rules" in detail["diff"] and "document" not in detail
    runtimes = {r["runtime_id"]: r for r in client.get("/api/v1/runtimes/").json()["results"]}
    assert (runtimes["billing-1"]["sync"], runtimes["shipping-1"]["sync"]) == ("in_sync", "error")
    assert client.get("/api/v1/runtimes/?application=shipping").json()["count"] == 1


def test_api_push_and_rollback_are_for_staff(versions, personas):
    _, v1, _ = versions
    bob, sam = client_for(personas["bob"]), client_for(personas["sam"])
    assert bob.post("/api/v1/config-versions/push/").status_code == 403
    assert bob.post(f"/api/v1/config-versions/{v1.pk}/rollback/").status_code == 404
    assert sam.post("/api/v1/config-versions/push/").json() == {"outcome": "republished", "version": 2, "error": ""}
    confirm = sam.get(f"/api/v1/config-versions/{v1.pk}/restore-preview/").json()["confirm"]
    response = sam.post(f"/api/v1/config-versions/{v1.pk}/rollback/", {"confirm": confirm},
                        content_type="application/json")
    assert response.status_code == 201 and response.json()["version"] == 3
    document = sam.get(f"/api/v1/config-versions/{v1.pk}/document/").json()
    assert document["checksum"] == v1.checksum and document["subscriptions"][0]["secret"] == "(redacted)"


def test_api_refuses_anonymous_requests(versions, client):
    for url in ("/api/v1/config-versions/", "/api/v1/runtimes/", "/api/v1/config-versions/push/"):
        assert client.get(url).status_code == 401


# manage.py mesh


def test_export_config_prints_the_published_document(versions):
    out = io.StringIO()
    call_command("mesh", "export-config", "--include-secrets", stdout=out)
    doc = validate_document(json.loads(out.getvalue()))
    assert doc == ConfigVersion.objects.get(version=2).document


def test_export_config_redacts_signing_secrets_and_key_digests_unless_asked(versions):
    mesh, _, _ = versions
    secrets = [sub.signing_secret for sub in mesh.subs.values()] + [key.sha256 for key in mesh.keys.values()]
    out, err = io.StringIO(), io.StringIO()
    call_command("mesh", "export-config", stdout=out, stderr=err)
    assert not [secret for secret in secrets if secret in out.getvalue()]
    assert "(redacted)" in out.getvalue() and "--include-secrets" in err.getvalue()
    assert not AuditEntry.objects.filter(action=AuditEntry.EXPORT).exists()


def test_export_config_with_secrets_is_recorded_in_the_audit_log(versions, tmp_path):
    mesh, _, _ = versions
    target = tmp_path / "config.json"
    call_command("mesh", "export-config", "--include-secrets", "--output", str(target), stderr=io.StringIO())
    assert mesh.subs["active"].signing_secret in target.read_text()
    assert target.stat().st_mode & 0o077 == 0  # only its owner reads it
    [entry] = AuditEntry.objects.filter(action=AuditEntry.EXPORT)
    assert entry.object_repr == "config version 2" and "(manage.py mesh export-config)" in entry.actor_name
    assert entry.after["include_secrets"] is True and entry.after["output"] == str(target)


def test_export_config_prints_an_unpublished_change_as_the_next_version(versions):
    mesh, _, _ = versions
    AccessRule.objects.filter(pk=mesh.rules["nobody-audit"].pk).update(description="unpublished")
    out, err = io.StringIO(), io.StringIO()
    call_command("mesh", "export-config", "--indent", "0", "--include-secrets", stdout=out, stderr=err)
    doc = validate_document(json.loads(out.getvalue()))
    assert doc["version"] == 3 and doc["checksum"] == compute_checksum(compile_mesh_config())
    assert "Not published yet" in err.getvalue()
    out = io.StringIO()
    call_command("mesh", "export-config", "--version", "1", stdout=out, stderr=err)
    assert json.loads(out.getvalue())["version"] == 1


def test_status_prints_runtimes_and_their_convergence(versions):
    out = io.StringIO()
    call_command("mesh", "status", stdout=out)
    text = out.getvalue()
    assert "Latest config version: 2" in text and "Runtimes: 2 reporting, 1 in sync" in text
    assert "billing-1" in text and "in_sync" in text and "error: config version 2 refused" in text
    out = io.StringIO()
    call_command("mesh", "status", "--json", stdout=out)
    assert {r["runtime_id"]: r["sync"] for r in json.loads(out.getvalue())["runtimes"]} == \
        {"billing-1": "in_sync", "shipping-1": "error"}


def test_push_command(versions):
    mesh, _, _ = versions
    out = io.StringIO()
    call_command("mesh", "push", stdout=out)
    assert out.getvalue().strip() == "unchanged: version 2"
    AccessRule.objects.filter(pk=mesh.rules["nobody-audit"].pk).update(description="pushed by hand")
    out = io.StringIO()
    call_command("mesh", "push", stdout=out)
    assert out.getvalue().strip() == "published: version 3"
