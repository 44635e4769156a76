"""Deleting what is still in use answers 409 naming what uses it: on the API, the object's delete
page and the bulk delete page, for every PROTECT relation there is (found by introspection, so a
new one fails here until it has a builder)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import models
from django.urls import reverse

from governance.models import AccessRule, Application, RoutingRule
from meshadmin.models import AuditEntry, Team
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_topic
from tests.portal_support.personas import client_for
from topics.models import EventStore, Topic

pytestmark = pytest.mark.django_db

PROJECT_APPS = {"meshadmin", "topics", "subscriptions", "governance", "rollout", "tracing"}


def protect_relations() -> list[tuple[type[models.Model], str, type[models.Model]]]:
    """(dependent model, field, protected model) of every PROTECT/RESTRICT foreign key of the project."""
    found = []
    for model in apps.get_models():
        if model._meta.app_label not in PROJECT_APPS:
            continue
        for field in model._meta.get_fields():
            on_delete = getattr(getattr(field, "remote_field", None), "on_delete", None)
            if field.concrete and on_delete in (models.PROTECT, models.RESTRICT):
                target = field.related_model
                if target._meta.app_label in PROJECT_APPS:  # the audit log's content types are never deleted
                    found.append((model, field.name, target))
    return sorted(found, key=lambda r: (r[0]._meta.label, r[1]))


def make_target(model, world, n: int = 1):
    """A fresh object of the protected model, owned by Payments."""
    return {
        Team: lambda: Team.objects.create(name=f"Doomed {n}", slug=f"doomed-{n}"),
        EventStore: lambda: EventStore.objects.create(name=f"doomed-store-{n}"),
        Topic: lambda: make_topic(world["payments"], world["store"], f"payments.doomed-{n}"),
        Application: lambda: make_app(world["payments"], f"doomed-app-{n}"),
    }[model]()


def make_dependent(model, field: str, target, world):
    """An object of ``model`` whose ``field`` is ``target``."""
    payments, store = world["payments"], world["store"]
    defaults = {
        Topic: lambda: {"name": "payments.user-of-target", "team": payments, "store": store},
        Application: lambda: {"name": "user-of-target", "team": payments},
        AccessRule: lambda: {"team": payments, "principal_kind": AccessRule.EVERYONE, "topic_pattern": "x.*",
                             "publish": True},
        RoutingRule: lambda: {"team": payments, "source_pattern": "x.*"},
        Subscription: lambda: {"topic": make_topic(payments, store), "application": make_app(payments),
                               "webhook_url": "https://hooks.example.com/x"},
    }[model]()
    return model.objects.create(**{**defaults, field: target})


RELATIONS = protect_relations()


def test_the_relations_covered_here_are_the_ones_expected():
    names = {f"{m.__name__}.{f}" for m, f, _ in RELATIONS}
    assert {"Subscription.topic", "Subscription.application", "Topic.team", "Topic.store",
            "Application.team", "AccessRule.team", "RoutingRule.team"} <= names


def _urls(target):
    meta = target._meta
    api = {"team": "team", "eventstore": "eventstore", "topic": "topic", "application": "application"}
    return (reverse(f"api:{api[meta.model_name]}-detail", args=[target.pk]),
            reverse(f"{meta.app_label}:{meta.model_name}_delete", args=[target.pk]),
            reverse(f"{meta.app_label}:{meta.model_name}_bulk_delete"))


@pytest.mark.parametrize("relation", RELATIONS, ids=[f"{t.__name__}-used-by-{m.__name__}.{f}"
                                                     for m, f, t in RELATIONS])
def test_deleting_an_object_in_use_answers_409_naming_its_users(relation, payments, store, personas):
    model, field, target_model = relation
    world = {"payments": payments, "store": store}
    target = make_target(target_model, world)
    dependent = make_dependent(model, field, target, world)
    api_url, page_url, bulk_url = _urls(target)
    spare = make_target(target_model, world, 2)  # deletable, for the bulk delete
    sam = client_for(personas["sam"])
    before = AuditEntry.objects.count()

    response = sam.delete(api_url)
    assert response.status_code == 409, response.content
    body = response.json()
    assert str(dependent) in body["detail"] and str(target) in body["detail"], body
    assert {"type": f"{model._meta.app_label}.{model._meta.model_name}", "id": dependent.pk,
            "display": str(dependent)} in body["used_by"]

    response = sam.post(page_url)
    assert response.status_code == 409
    assert str(dependent) in response.content.decode()
    assert "cannot be deleted" in response.content.decode()

    # Bulk: nothing is deleted, not even what could be, and the page says what blocks
    response = sam.post(bulk_url, {"pk": [target.pk, spare.pk], "confirm": "1"})
    assert response.status_code == 409
    html = response.content.decode()
    assert "Nothing was deleted" in html and str(dependent) in html
    assert target_model.objects.filter(pk__in=[target.pk, spare.pk]).count() == 2
    assert AuditEntry.objects.count() == before  # nothing was deleted, so nothing was logged


def test_a_team_owner_reads_what_keeps_her_topic_alive(payments, logistics, store, personas):
    """alice may delete her topic but carol's subscription to it still uses it: 409 names it."""
    topic = make_topic(payments, store, "payments.watched")
    subscription = Subscription.objects.create(topic=topic, application=make_app(logistics, "carol-app"),
                                               webhook_url="https://hooks.example.com/c")
    response = client_for(personas["alice"]).delete(reverse("api:topic-detail", args=[topic.pk]))
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"Topic payments.watched cannot be deleted: it is still used by 1 subscription: {subscription}. "
        "Delete or move it first.")
