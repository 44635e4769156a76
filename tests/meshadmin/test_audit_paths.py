"""The audit log records what the signals alone did not: users (staff and superuser grants, in the
admin too), API tokens, sign-ins and failed sign-ins, and rows changed by ``QuerySet.update()``."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.test import Client
from django.urls import reverse

from meshadmin.models import APIToken, AuditEntry
from tests.portal_support.factories import make_topic
from tests.portal_support.personas import PASSWORD, client_for
from topics.models import Topic

pytestmark = pytest.mark.django_db


def entries(obj=None, **filters):
    query = AuditEntry.objects.filter(**filters)
    if obj is not None:
        query = query.filter(object_type__model=obj._meta.model_name, object_id=str(obj.pk))
    return list(query.order_by("pk"))


def test_a_staff_grant_in_the_admin_is_recorded_with_its_author(personas):
    bob, sam = personas["bob"], personas["sam"]
    admin = client_for(sam)
    form = admin.get(reverse("admin:auth_user_change", args=[bob.pk]))
    assert form.status_code == 200
    data = {"username": "bob", "first_name": "", "last_name": "", "email": bob.email, "is_active": "on",
            "is_staff": "on", "date_joined_0": bob.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": bob.date_joined.strftime("%H:%M:%S"), "_save": "Save"}
    response = admin.post(reverse("admin:auth_user_change", args=[bob.pk]), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    [entry] = entries(bob, action=AuditEntry.UPDATE)
    assert entry.actor == sam
    assert ("is_staff", False, True) in entry.changes()
    assert "password" not in dict((f, b) for f, b, _ in entry.changes())  # unchanged, not shown


def test_a_superuser_grant_by_queryset_update_is_recorded(personas):
    bob = personas["bob"]
    assert User.objects.filter(pk=bob.pk).update(is_superuser=True) == 1
    [entry] = entries(bob, action=AuditEntry.UPDATE)
    assert entry.changes() == [("is_superuser", False, True)]
    assert entry.actor_name == "system"


def test_a_password_change_is_recorded_without_the_hash(personas):
    bob = personas["bob"]
    old_hash = bob.password
    bob.set_password("another correct horse")
    bob.save()
    [entry] = entries(bob, action=AuditEntry.UPDATE)
    [(field, before, after)] = entry.changes()
    assert field == "password" and before.startswith("(redacted ") and after.startswith("(redacted ")
    assert old_hash not in str(entry.before) and bob.password not in str(entry.after)


def test_tokens_created_and_revoked_in_the_portal_are_recorded_without_their_digest(personas):
    bob = personas["bob"]
    client = client_for(bob)
    client.post(reverse("meshadmin:apitoken_list"), {"description": "ci"})
    token = APIToken.objects.get(user=bob)
    [created] = entries(token, action=AuditEntry.CREATE)
    assert created.actor == bob and created.after["description"] == "ci"
    assert "digest" not in created.after and token.digest not in str(created.after)
    client.post(reverse("meshadmin:apitoken_delete", args=[token.pk]))
    [revoked] = entries(token, action=AuditEntry.DELETE)
    assert revoked.actor == bob


def test_using_a_token_writes_nothing(personas):
    token = APIToken(user=personas["bob"])
    key = token.generate()
    token.save()
    before = AuditEntry.objects.count()
    assert Client().get("/api/v1/topics/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert APIToken.objects.get(pk=token.pk).last_used is not None  # an update() of an unaudited field
    assert AuditEntry.objects.count() == before


def test_sign_ins_and_failed_sign_ins_are_recorded_with_the_address(alice):
    where = f"10.77.{uuid.uuid4().bytes[0]}.{uuid.uuid4().bytes[1]}"
    client = Client(REMOTE_ADDR=where)
    client.post(reverse("login"), {"username": "alice", "password": "hunter2-guess"})
    client.post(reverse("login"), {"username": "nobody-here", "password": "hunter2-guess"})
    client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    failed, unknown = entries(action=AuditEntry.LOGIN_FAILED)
    assert failed.object_id == str(alice.pk) and failed.actor is None and failed.actor_name == "anonymous"
    assert failed.after == {"username": "alice", "address": where, "reason": "wrong credentials"}
    assert unknown.object_id == "" and unknown.object_repr == "nobody-here"
    assert "hunter2" not in str(failed.after) + str(unknown.after)  # never the password
    [signed_in] = entries(alice, action=AuditEntry.LOGIN)
    assert signed_in.actor == alice and signed_in.after == {"address": where}


def test_queryset_updates_of_governed_rows_are_recorded_row_by_row(payments, store, personas):
    a, b = make_topic(payments, store, "orders.a"), make_topic(payments, store, "orders.b")
    make_topic(payments, store, "invoices.c")
    changed = Topic.objects.filter(name__startswith="orders.").update(
        description=Concat(F("name"), Value(" (bulk)")))
    assert changed == 2
    for topic in (a, b):
        [entry] = entries(topic, action=AuditEntry.UPDATE)
        assert entry.changes() == [("description", "", f"{topic.name} (bulk)")]
        assert entry.team == payments
    assert len(entries(action=AuditEntry.UPDATE)) == 2  # invoices.c was not touched


def test_related_manager_and_bulk_update_paths_are_recorded(payments, store):
    topic = make_topic(payments, store, "orders.related")
    payments.topics.update(lifecycle=Topic.DEPRECATED, sunset="2030-01-01")
    [entry] = entries(topic, action=AuditEntry.UPDATE)
    assert ("lifecycle", "active", "deprecated") in entry.changes()
    topic.refresh_from_db()
    topic.description = "bulk_update"
    Topic.objects.bulk_update([topic], ["description"])
    assert entries(topic, action=AuditEntry.UPDATE)[-1].changes() == [("description", "", "bulk_update")]


def test_an_update_that_changes_nothing_writes_nothing(payments, store):
    make_topic(payments, store, "orders.same", description="same")
    assert Topic.objects.filter(name="orders.same").update(description="same") == 1
    assert not entries(action=AuditEntry.UPDATE)
