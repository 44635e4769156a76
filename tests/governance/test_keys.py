"""Application keys: created by the application's team, shown once, stored as prefix + digest,
listed and revoked; the key itself never appears again in a page, the API, the audit log or logs."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.models import ApplicationKey
from meshadmin.models import AuditEntry
from tests.portal_support.factories import make_app, make_key
from tests.portal_support.mixins import ConstantListQueries, ModelAPITests, ModelPageTests
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db

KEY = re.compile(r"mk_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{40}")


class KeyData:
    url_name = "governance:applicationkey"
    api_basename = "applicationkey"
    visible_to_outsider = False  # keys are the application team's business

    def make_object(self, team, store):
        return make_key(make_app(team), description="ci")

    def create_data(self, team, store):
        return {"application": make_app(team).pk, "description": "production"}

    def update_data(self, obj):
        return {"description": "renamed", "expires": ""}

    def api_update_data(self, obj):
        return {"description": "renamed through the API"}


class TestKeyPages(KeyData, ConstantListQueries, ModelPageTests):
    def test_editor_creates_an_object_and_the_audit_log_records_it(self, payments, store, personas):
        """Overrides the mixin's: a new key is answered with the key itself, once, never cached
        (a redirect would have to keep it somewhere to show it)."""
        data = self.create_data(payments, store)
        response = client_for(personas["bob"]).post(reverse("governance:applicationkey_add"), data)
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"]
        plain = KEY.search(response.content.decode()).group(0)
        key = ApplicationKey.objects.get()
        assert plain.startswith(f"mk_{key.prefix}_") and key.created_by == personas["bob"]
        assert key.sha256 == hashlib.sha256(plain.encode()).hexdigest()
        entry = AuditEntry.objects.get(action=AuditEntry.CREATE, object_id=str(key.pk), actor=personas["bob"])
        assert "sha256" not in entry.after and plain not in json.dumps(entry.after)

    def test_the_key_never_appears_again(self, payments, store, personas, caplog):
        caplog.set_level(logging.DEBUG)
        client = client_for(personas["alice"])
        app = make_app(payments)
        plain = KEY.search(client.post(reverse("governance:applicationkey_add"),
                                       {"application": app.pk}).content.decode()).group(0)
        key = ApplicationKey.objects.get()
        client.post(reverse("governance:applicationkey_edit", args=[key.pk]), {"description": "x"})
        client.post(reverse("governance:applicationkey_revoke", args=[key.pk]))
        pages = [app.get_absolute_url(), reverse("governance:applicationkey_list"),
                 reverse("governance:applicationkey", args=[key.pk]),
                 reverse("governance:applicationkey_history", args=[key.pk]),
                 reverse("meshadmin:auditentry_list"), reverse("api:applicationkey-list"),
                 reverse("api:applicationkey-detail", args=[key.pk]), reverse("api:auditentry-list")]
        for url in pages:
            body = client.get(url).content.decode()
            assert key.prefix in body or url.startswith("/audit/") or "history" in url, url
            assert plain not in body and key.sha256 not in body, url
        for entry in AuditEntry.objects.all():
            assert plain not in json.dumps([entry.before, entry.after]) and key.sha256 not in json.dumps(entry.after)
        assert plain not in caplog.text

    def test_only_the_application_teams_applications_are_offered(self, payments, logistics, store, personas):
        theirs = make_app(logistics)
        response = client_for(personas["bob"]).post(reverse("governance:applicationkey_add"),
                                                     {"application": theirs.pk})
        assert response.status_code == 400
        assert not ApplicationKey.objects.exists()

    def test_a_viewer_cannot_create_a_key(self, payments, personas):
        app = make_app(payments)
        response = client_for(personas["dave"]).post(reverse("governance:applicationkey_add"),
                                                      {"application": app.pk})
        assert response.status_code in (400, 403)
        assert not ApplicationKey.objects.exists()

    def test_editor_revokes_a_key_and_it_is_no_longer_active(self, obj, personas):
        response = client_for(personas["bob"]).post(reverse("governance:applicationkey_revoke", args=[obj.pk]),
                                                    follow=True)
        obj.refresh_from_db()
        assert obj.revoked is not None and not obj.is_active
        assert f"Revoked key {obj.prefix}" in response.content.decode()
        entry = AuditEntry.objects.filter(object_id=str(obj.pk), action=AuditEntry.UPDATE).latest("pk")
        assert entry.after["revoked"] and entry.actor_name == "bob"

    @pytest.mark.parametrize("role", ["dave", "carol"])
    def test_viewers_and_outsiders_cannot_revoke(self, obj, personas, role):
        response = client_for(personas[role]).post(reverse("governance:applicationkey_revoke", args=[obj.pk]))
        assert response.status_code == 404
        obj.refresh_from_db()
        assert obj.revoked is None

    def test_list_shows_status_and_filters_by_it(self, payments, store, personas):
        app = make_app(payments)
        active = make_key(app, description="active-one")
        expired = make_key(app, description="expired-one", expires=timezone.now() - timedelta(days=1))
        revoked = make_key(app, description="revoked-one")
        revoked.revoke()
        client = client_for(personas["dave"])
        for status, shown in (("active", active), ("expired", expired), ("revoked", revoked)):
            html = client.get(reverse("governance:applicationkey_list"), {"status": status}).content.decode()
            assert shown.description in html and "1 result" in html, status

    def test_outsiders_see_no_keys_in_the_list(self, obj, personas):
        html = client_for(personas["carol"]).get(reverse("governance:applicationkey_list")).content.decode()
        assert obj.prefix not in html and "0 results" in html


class TestKeyAPI(KeyData, ModelAPITests):
    def test_api_create_answers_with_the_key_once(self, payments, store, personas):
        client = client_for(personas["bob"])
        data = self.api_create_data(payments, store)
        body = client.post(reverse("api:applicationkey-list"), data, content_type="application/json").json()
        key = ApplicationKey.objects.get(pk=body["id"])
        assert KEY.fullmatch(body["key"]) and body["prefix"] == key.prefix
        assert key.sha256 == hashlib.sha256(body["key"].encode()).hexdigest()
        detail = client.get(reverse("api:applicationkey-detail", args=[key.pk])).json()
        assert "key" not in detail and "sha256" not in detail

    def test_api_revokes_a_key(self, obj, personas):
        response = client_for(personas["bob"]).post(reverse("api:applicationkey-revoke", args=[obj.pk]))
        assert response.status_code == 200 and response.json()["is_active"] is False
        obj.refresh_from_db()
        assert obj.revoked is not None

    def test_api_revoke_by_a_viewer_is_403_naming_the_role(self, obj, personas):
        response = client_for(personas["dave"]).post(reverse("api:applicationkey-revoke", args=[obj.pk]))
        assert response.status_code == 403
        assert response.json()["detail"].startswith("You are a viewer of team Payments")
        obj.refresh_from_db()
        assert obj.revoked is None

    def test_api_a_key_cannot_move_to_another_application(self, obj, payments, personas):
        other = make_app(payments)
        client_for(personas["bob"]).patch(reverse("api:applicationkey-detail", args=[obj.pk]),
                                          {"application": other.pk}, content_type="application/json")
        obj.refresh_from_db()
        assert obj.application_id != other.pk
