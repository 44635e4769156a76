"""Generic tests for a model's pages and API (NetBox's ViewTestCases / APIViewTestCases).

A model's test class declares only its data::

    class TestTopicPages(ModelPageTests):
        url_name = "topics:topic"
        def make_object(self, team, store): ...      # an object owned by ``team``
        def create_data(self, team, store): ...      # valid form data for a new object
        def update_data(self, obj): ...              # valid form data that changes ``obj``

and inherits list, detail, create, edit, delete, bulk delete and history tests, each with and
without permission. Roles are class attributes, so a model where only owners may change things
says ``editor = "alice"``.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from meshadmin.models import AuditEntry
from tests.portal_support.personas import client_for


class _ModelTests:
    url_name: str  # "app:model"
    api_basename: str = ""  # "topic" → api:topic-list
    editor = "bob"  # may change objects of the owning team
    viewer = "dave"  # may see, may not change
    outsider = "carol"  # of another team
    visible_to_outsider = True  # catalog objects are visible to every signed-in user
    created_for_a_team = True  # new objects name an owning team the creator must belong to

    @pytest.fixture
    def obj(self, payments, store, personas):
        return self.make_object(payments, store)

    def make_object(self, team, store):
        raise NotImplementedError

    def create_data(self, team, store) -> dict:
        raise NotImplementedError

    def update_data(self, obj) -> dict:
        raise NotImplementedError

    def url(self, suffix="", *args):
        return reverse(f"{self.url_name}{suffix}", args=args)



class ModelPageTests(_ModelTests):
    def test_list_shows_the_object_to_its_team(self, obj, personas):
        response = client_for(personas[self.editor]).get(self.url("_list"))
        assert response.status_code == 200
        assert str(obj) in response.content.decode()

    def test_list_and_detail_send_anonymous_visitors_to_login(self, obj, client):
        for url in (self.url("_list"), self.url("", obj.pk)):
            response = client.get(url)
            assert response.status_code == 302
            assert response["Location"].startswith(reverse("login"))

    def test_outsider_sees_the_object_only_where_it_is_public(self, obj, personas):
        response = client_for(personas[self.outsider]).get(self.url("", obj.pk))
        assert response.status_code == (200 if self.visible_to_outsider else 404)

    def test_detail_shows_the_object(self, obj, personas):
        response = client_for(personas[self.viewer]).get(self.url("", obj.pk))
        assert response.status_code == 200
        assert str(obj) in response.content.decode()

    def test_editor_creates_an_object_and_the_audit_log_records_it(self, payments, store, personas):
        editor = personas[self.editor]
        data = self.create_data(payments, store)
        response = client_for(editor).post(self.url("_add"), data)
        assert response.status_code == 302, response.content.decode()[:3000]
        entry = AuditEntry.objects.filter(action=AuditEntry.CREATE, actor=editor).latest("pk")
        assert entry.object_type.model_class().objects.filter(pk=entry.object_id).exists()

    def test_outsider_cannot_create_an_object_for_another_team(self, payments, store, personas):
        if not self.created_for_a_team:
            pytest.skip("new objects of this model belong to their creator, not to a team")
        data = self.create_data(payments, store)
        before = AuditEntry.objects.count()
        response = client_for(personas[self.outsider]).post(self.url("_add"), data)
        assert response.status_code in (400, 403)
        assert AuditEntry.objects.count() == before

    def test_invalid_form_answers_400_with_field_errors(self, payments, store, personas):
        data = {key: "" for key in self.create_data(payments, store)}
        response = client_for(personas[self.editor]).post(self.url("_add"), data)
        assert response.status_code == 400
        assert "invalid-feedback" in response.content.decode()

    def test_editor_edits_the_object(self, obj, personas):
        data = self.update_data(obj)
        response = client_for(personas[self.editor]).post(self.url("_edit", obj.pk), data)
        assert response.status_code == 302, response.content.decode()[:3000]
        assert AuditEntry.objects.filter(action=AuditEntry.UPDATE, object_id=str(obj.pk)).exists()

    @pytest.mark.parametrize("role", ["viewer", "outsider"])
    def test_others_cannot_open_or_post_the_edit_form(self, obj, personas, role):
        client = client_for(personas[getattr(self, role)])
        assert client.get(self.url("_edit", obj.pk)).status_code == 404
        assert client.post(self.url("_edit", obj.pk), self.update_data(obj)).status_code == 404
        assert client.post(self.url("_delete", obj.pk)).status_code == 404
        assert type(obj).objects.filter(pk=obj.pk).exists()

    def test_editor_deletes_the_object(self, obj, personas):
        client = client_for(personas[self.editor])
        assert client.get(self.url("_delete", obj.pk)).status_code == 200
        assert client.post(self.url("_delete", obj.pk)).status_code == 302
        assert not type(obj).objects.filter(pk=obj.pk).exists()
        assert AuditEntry.objects.filter(action=AuditEntry.DELETE, object_id=str(obj.pk)).exists()

    def test_bulk_delete_removes_only_what_the_user_may_delete(self, obj, personas, logistics, store):
        theirs = self.make_object(logistics, store)
        client = client_for(personas[self.editor])
        response = client.post(self.url("_bulk_delete"), {"pk": [obj.pk, theirs.pk], "confirm": "1"})
        assert response.status_code == 302
        assert not type(obj).objects.filter(pk=obj.pk).exists()
        assert type(obj).objects.filter(pk=theirs.pk).exists()

    def test_history_tab_lists_the_changes(self, obj, personas):
        client_for(personas[self.editor]).post(self.url("_edit", obj.pk), self.update_data(obj))
        response = client_for(personas[self.editor]).get(self.url("_history", obj.pk))
        assert response.status_code == 200
        assert response.content.decode().count('data-testid="audit-entry"') >= 2


class ModelAPITests(_ModelTests):
    def api_url(self, obj=None):
        if obj is None:
            return reverse(f"api:{self.api_basename}-list")
        return reverse(f"api:{self.api_basename}-detail", args=[obj.pk])

    def api_create_data(self, team, store) -> dict:
        return self.create_data(team, store)

    def api_update_data(self, obj) -> dict:
        return self.update_data(obj)

    def _send(self, client, method, url, data=None):
        return getattr(client, method)(url, json.dumps(data or {}), content_type="application/json")

    def test_api_list_and_detail(self, obj, personas):
        client = client_for(personas[self.viewer])
        response = client.get(self.api_url())
        assert response.status_code == 200
        body = response.json()
        assert body["count"] >= 1 and {"count", "next", "previous", "results"} <= set(body)
        assert client.get(self.api_url(obj)).json()["id"] == obj.pk

    def test_api_answers_401_to_anonymous_requests(self, obj, client):
        assert client.get(self.api_url()).status_code == 401
        assert client.get(self.api_url(obj)).status_code == 401
        assert self._send(client, "post", self.api_url(), {}).status_code == 401

    def test_api_create_by_editor(self, payments, store, personas):
        response = self._send(client_for(personas[self.editor]), "post", self.api_url(),
                              self.api_create_data(payments, store))
        assert response.status_code == 201, response.content
        assert AuditEntry.objects.filter(action=AuditEntry.CREATE, object_id=str(response.json()["id"])).exists()

    def test_api_create_for_another_team_is_refused(self, payments, store, personas):
        if not self.created_for_a_team:
            pytest.skip("new objects of this model belong to their creator, not to a team")
        before = AuditEntry.objects.count()
        response = self._send(client_for(personas[self.outsider]), "post", self.api_url(),
                              self.api_create_data(payments, store))
        assert response.status_code in (400, 403)
        assert AuditEntry.objects.count() == before

    def test_api_invalid_data_answers_400_naming_the_field(self, payments, store, personas):
        data = {key: "" if isinstance(value, str) else None
                for key, value in self.api_create_data(payments, store).items()}
        response = self._send(client_for(personas[self.editor]), "post", self.api_url(), data)
        assert response.status_code == 400
        assert set(response.json()) & set(data)

    def test_api_update_by_editor(self, obj, personas):
        response = self._send(client_for(personas[self.editor]), "patch", self.api_url(obj),
                              self.api_update_data(obj))
        assert response.status_code == 200, response.content
        assert AuditEntry.objects.filter(action=AuditEntry.UPDATE, object_id=str(obj.pk)).exists()

    @pytest.mark.parametrize("role", ["viewer", "outsider"])
    def test_api_update_and_delete_by_others_is_403_if_they_see_it_else_404(self, obj, personas, role):
        client = client_for(personas[getattr(self, role)])
        sees_it = role == "viewer" or self.visible_to_outsider
        assert client.get(self.api_url(obj)).status_code == (200 if sees_it else 404)
        for response in (self._send(client, "patch", self.api_url(obj), self.api_update_data(obj)),
                         client.delete(self.api_url(obj))):
            assert response.status_code == (403 if sees_it else 404), response.content
            if sees_it:
                assert str(obj.owning_team) in response.json()["detail"]
        assert type(obj).objects.filter(pk=obj.pk).exists()

    def test_api_delete_by_editor(self, obj, personas):
        assert client_for(personas[self.editor]).delete(self.api_url(obj)).status_code == 204
        assert not type(obj).objects.filter(pk=obj.pk).exists()


def page_after_constant_queries(client, url: str, add, django_assert_num_queries) -> str:
    """Opens ``url`` with three rows made (``add(3)``), then after 27 more (``add(27)``), asserting
    that it runs as many SQL queries for 30 rows as for 3; the last page's HTML."""
    add(3)
    client.get(url)  # first request of the session: warms caches that are not per row
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    add(27)
    with django_assert_num_queries(len(few)):
        return client.get(url).content.decode()


class ConstantListQueries:
    """The list page runs as many SQL queries for 30 rows as for 3 (no query per row)."""

    list_user = "bob"

    def make_row(self, team, store):
        return self.make_object(team, store)

    def test_list_page_runs_a_constant_number_of_queries(self, payments, store, personas,
                                                         django_assert_num_queries):
        client = client_for(personas[self.list_user])
        url = reverse(f"{self.url_name}_list")
        for _ in range(3):
            self.make_row(payments, store)
        client.get(url)  # first request of the session: warms caches that are not per row
        with CaptureQueriesContext(connection) as few:
            assert "3 results" in client.get(url).content.decode()
        for _ in range(27):
            self.make_row(payments, store)
        with django_assert_num_queries(len(few)):
            response = client.get(url)
        assert "30 results" in response.content.decode()
