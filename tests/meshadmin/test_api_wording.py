"""The API says why: what a user sees but may not change is 403 naming the role they lack in
which team (what they cannot see stays 404); teams are taken by id or by slug."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from tests.portal_support.factories import make_app, make_key, make_subscription, make_topic
from tests.portal_support.personas import client_for
from topics.models import Topic

pytestmark = pytest.mark.django_db


def _post(client, url, data):
    return client.post(url, json.dumps(data), content_type="application/json")


def _patch(client, url, data):
    return client.patch(url, json.dumps(data), content_type="application/json")


def test_creating_a_topic_for_a_visible_team_one_is_not_in_is_403_naming_the_team(logistics, store, personas):
    response = _post(client_for(personas["bob"]), reverse("api:topic-list"),
                     {"name": "orders.stolen", "team": logistics.pk, "store": store.pk})
    assert response.status_code == 403
    assert response.json() == {"detail": "You are not a member of team Logistics: only its owners and members "
                                         "create topics for it."}
    assert not Topic.objects.filter(name="orders.stolen").exists()


def test_a_viewer_is_told_that_viewers_do_not_create(payments, store, personas):
    response = _post(client_for(personas["dave"]), reverse("api:topic-list"),
                     {"name": "orders.viewed", "team": "payments", "store": store.pk})
    assert response.status_code == 403
    assert response.json()["detail"] == ("You are a viewer of team Payments: only its owners and members create "
                                         "topics for it.")


def test_patch_and_delete_of_a_visible_topic_of_another_team_are_403_not_404(logistics, store, personas):
    topic = make_topic(logistics, store, "logistics.parcels")
    bob = client_for(personas["bob"])
    url = reverse("api:topic-detail", args=[topic.pk])
    assert bob.get(url).status_code == 200
    response = _patch(bob, url, {"description": "mine now"})
    assert response.status_code == 403
    assert response.json()["detail"] == ("You are not a member of team Logistics: only its owners and members "
                                         "change its topics.")
    response = bob.delete(url)
    assert response.status_code == 403
    assert "delete its topics" in response.json()["detail"]
    assert Topic.objects.get(pk=topic.pk).description == ""


def test_moving_ones_topic_to_a_foreign_team_is_403(payments, logistics, store, personas):
    topic = make_topic(payments, store, "payments.moving")
    response = _patch(client_for(personas["bob"]), reverse("api:topic-detail", args=[topic.pk]),
                      {"team": logistics.slug})
    assert response.status_code == 403
    assert response.json()["detail"] == ("You are not a member of team Logistics: only its owners and members "
                                         "move topics to it.")


def test_what_one_cannot_see_stays_404(payments, logistics, store, personas, olga):
    subscription = make_subscription(make_app(payments), make_topic(payments, store))
    key = make_key(make_app(payments))
    client = client_for(olga)
    for url in (reverse("api:subscription-detail", args=[subscription.pk]),
                reverse("api:applicationkey-detail", args=[key.pk])):
        assert client.get(url).status_code == 404
        assert _patch(client, url, {"description": "x"}).status_code == 404
        assert client.delete(url).status_code == 404
    assert client.post(reverse("api:applicationkey-revoke", args=[key.pk])).status_code == 404


def test_revoking_a_visible_key_without_the_role_is_403(payments, personas):
    key = make_key(make_app(payments, "billing"))
    response = client_for(personas["dave"]).post(reverse("api:applicationkey-revoke", args=[key.pk]))
    assert response.status_code == 403
    assert response.json()["detail"].startswith("You are a viewer of team Payments")


def test_a_subscription_for_another_teams_application_is_403_naming_that_team(payments, logistics, store,
                                                                               personas):
    app = make_app(payments, "billing")
    topic = make_topic(logistics, store, "logistics.parcels")
    response = _post(client_for(personas["carol"]), reverse("api:subscription-list"),
                     {"application": app.pk, "topic": topic.pk, "webhook_url": "https://hooks.example.com/c"})
    assert response.status_code == 403
    assert response.json()["detail"] == ("You are not a member of team Payments: only its owners and members "
                                         "create subscriptions for its applications.")


def test_only_owners_manage_memberships_and_members_are_told_so(payments, personas, olga):
    response = _post(client_for(personas["bob"]), reverse("api:membership-list"),
                     {"team": "payments", "user": olga.pk, "role": "member"})
    assert response.status_code == 403
    assert response.json()["detail"] == ("You are a member of team Payments: only its owners create memberships "
                                         "for it.")
    response = _post(client_for(personas["alice"]), reverse("api:membership-list"),
                     {"team": "payments", "user": olga.pk, "role": "member"})
    assert response.status_code == 201, response.content


def test_teams_are_taken_by_id_or_by_slug(payments, store, personas):
    bob = client_for(personas["bob"])
    response = _post(bob, reverse("api:topic-list"), {"name": "orders.by-slug", "team": "payments",
                                                      "store": store.pk})
    assert response.status_code == 201, response.content
    assert response.json()["team"] == payments.pk
    response = _post(bob, reverse("api:topic-list"), {"name": "orders.nowhere", "team": "no-such-team",
                                                      "store": store.pk})
    assert response.status_code == 400
    assert response.json() == {"team": ['No team with the slug "no-such-team".']}
    assert bob.get("/api/v1/teams/payments/").json()["id"] == payments.pk
    assert bob.get(f"/api/v1/teams/{payments.pk}/").json()["slug"] == "payments"
    assert bob.get("/api/v1/teams/no-such-team/").status_code == 404
