"""Whole config documents are for staff, and key digests never leave the server (issue 12, item 4).

A document names every team's rules and, as runtimes need them, every application's key digest
and every subscription's signing secret. Staff read documents with digests and secrets redacted;
everyone else signed in gets 403 (they see the versions, summaries and diffs); anonymous
visitors are sent to sign in. Diffs, which every signed-in user reads, name keys by prefix only,
including the diffs recorded before that rule.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.models import ApplicationKey
from rollout import push
from rollout.models import ConfigVersion
from tests.portal_support.mesh import build_mesh
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db

NON_STAFF = ("alice", "bob", "carol", "dave")


@pytest.fixture
def published(mesh_redis, personas):  # noqa: F811
    """Version 1, then version 2 in which a key's expiry changed (a diff that lists the keys)."""
    mesh = build_mesh()
    push.push()
    key = mesh.keys["billing-expiring"]
    ApplicationKey.objects.filter(pk=key.pk).update(expires=timezone.now() + timedelta(days=90))
    push.push()
    digests = list(ApplicationKey.objects.values_list("sha256", flat=True))
    secrets = [sub.signing_secret for sub in mesh.subs.values()]
    return mesh, ConfigVersion.objects.get(version=1), ConfigVersion.objects.get(version=2), digests + secrets


def page_url(version) -> str:
    return reverse("rollout:configversion_document", args=[version.pk])


def api_url(version) -> str:
    return f"/api/v1/config-versions/{version.pk}/document/"


def assert_no_hidden_value(body: str, hidden: list[str]) -> None:
    for value in hidden:
        assert value not in body


@pytest.mark.parametrize("who", NON_STAFF)
def test_only_staff_read_documents_page_and_api(published, personas, who):
    _, v1, v2, hidden = published
    client = client_for(personas[who])
    for url in (page_url(v1), page_url(v2), api_url(v1), api_url(v2)):
        response = client.get(url)
        assert response.status_code == 403, (who, url, response.status_code)
        assert "Only staff read whole config documents" in response.content.decode()
        assert_no_hidden_value(response.content.decode(), hidden)


def test_anonymous_visitors_read_no_document(published, client):
    _, v1, _, _ = published
    assert client.get(page_url(v1))["Location"].startswith("/login/")
    assert client.get(api_url(v1)).status_code == 401


@pytest.mark.parametrize("url", [page_url, api_url])
def test_staff_read_documents_without_digests_or_secrets(published, personas, url):
    mesh, v1, _, hidden = published
    response = client_for(personas["sam"]).get(url(v1))
    assert response.status_code == 200
    document = response.json()
    assert document["checksum"] == v1.checksum
    keys = [key for app in document["applications"] for key in app["keys"]]
    assert keys and {key["sha256"] for key in keys} == {"(redacted)"}
    assert {key["prefix"] for key in keys} == {k.prefix for k in mesh.keys.values() if k.is_active}
    assert {sub["secret"] for sub in document["subscriptions"]} == {"(redacted)"}
    assert_no_hidden_value(response.content.decode(), hidden)


@pytest.mark.parametrize("who", [*NON_STAFF, "sam"])
def test_version_pages_and_api_show_no_digest_even_in_an_expiry_diff(published, personas, who):
    _, v1, v2, hidden = published
    client = client_for(personas[who])
    page = client.get(v2.get_absolute_url())
    assert page.status_code == 200 and "keys" in page.content.decode()
    assert ('data-testid="document-link"' in page.content.decode()) is (who == "sam")
    detail = client.get(f"/api/v1/config-versions/{v2.pk}/")
    assert detail.status_code == 200 and "applications" in detail.json()["diff"]
    listing = client.get("/api/v1/config-versions/")
    for response in (page, detail, listing, client.get(v1.get_absolute_url())):
        assert_no_hidden_value(response.content.decode(), hidden)


def test_a_diff_recorded_with_digests_is_redacted_when_shown(published, personas):
    _, _, v2, hidden = published
    digest = hidden[0]
    ConfigVersion.objects.filter(pk=v2.pk).update(diff={"applications": {"added": [], "removed": [], "changed": [
        {"id": "billing", "fields": {"keys": {"before": [{"prefix": "AAAAAAAA", "sha256": digest}], "after": []}}}]}})
    for who in ("carol", "sam"):
        client = client_for(personas[who])
        assert digest not in client.get(v2.get_absolute_url()).content.decode()
        assert digest not in client.get(f"/api/v1/config-versions/{v2.pk}/").content.decode()


def test_new_diffs_record_no_digest(published):
    _, _, v2, hidden = published
    assert "keys" in str(v2.diff)
    assert_no_hidden_value(str(v2.diff), hidden)
