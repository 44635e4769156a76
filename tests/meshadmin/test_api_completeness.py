"""What the portal shows is in the API too: the API's root, personal tokens (created with the key
shown once, revoked), validation findings; each per persona, with the pages' permissions."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from governance.models import AccessRule
from meshadmin.models import APIToken, AuditEntry, Team
from tests.portal_support.factories import make_app, make_rule, make_subscription, make_topic
from tests.portal_support.personas import client_for
from tests.portal_support.personas import olga as olga  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db


def post(client, url, data):
    return client.post(url, json.dumps(data), content_type="application/json")


# The root


def test_the_root_lists_every_endpoint_and_each_answers(personas):
    sam = client_for(personas["sam"])
    response = sam.get("/api/v1/")
    assert response.status_code == 200
    index = response.json()
    for name in ("topics", "subscriptions", "tokens", "validation", "simulator", "teams", "config-versions"):
        assert index[name] == f"http://testserver/api/v1/{name}/"
    for name, url in index.items():
        answer = sam.get(url.removeprefix("http://testserver"))
        assert answer.status_code in (200, 400, 405), (name, answer.status_code)  # 400: the simulator's query


def test_the_root_answers_401_to_anonymous_requests(client):
    assert client.get("/api/v1/").status_code == 401


# Tokens


def test_a_token_made_through_the_api_is_shown_once_and_works(personas):
    bob = client_for(personas["bob"])
    response = post(bob, "/api/v1/tokens/", {"description": "ci", "read_only": True})
    assert response.status_code == 201, response.content
    created = response.json()
    key = created["key"]
    assert key.startswith(f"mat_{created['prefix']}_") and created["read_only"] is True
    assert "key" not in bob.get(f"/api/v1/tokens/{created['id']}/").json()
    assert key not in bob.get("/api/v1/tokens/").content.decode()
    token_client = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert token_client.get("/api/v1/topics/").status_code == 200
    assert post(token_client, "/api/v1/tokens/", {"description": "escalate"}).status_code == 403  # read-only
    entry = AuditEntry.objects.get(object_type__model="apitoken", action=AuditEntry.CREATE)
    assert entry.actor == personas["bob"] and key not in json.dumps(entry.after)


def test_deleting_a_token_revokes_it_at_once(personas):
    bob = client_for(personas["bob"])
    created = post(bob, "/api/v1/tokens/", {"description": "short-lived"}).json()
    assert bob.delete(f"/api/v1/tokens/{created['id']}/").status_code == 204
    assert not APIToken.objects.filter(pk=created["id"]).exists()
    assert Client(HTTP_AUTHORIZATION=f"Token {created['key']}").get("/api/v1/topics/").status_code == 401
    assert AuditEntry.objects.filter(object_type__model="apitoken", action=AuditEntry.DELETE,
                                     actor=personas["bob"]).exists()


@pytest.mark.parametrize("who", ["carol", "dave", "sam"])
def test_nobody_else_sees_or_revokes_a_token(personas, who):
    created = post(client_for(personas["bob"]), "/api/v1/tokens/", {"description": "bob's"}).json()
    other = client_for(personas[who])
    assert other.get(f"/api/v1/tokens/{created['id']}/").status_code == 404
    assert other.delete(f"/api/v1/tokens/{created['id']}/").status_code == 404
    assert other.get("/api/v1/tokens/").json()["count"] == 0
    assert APIToken.objects.filter(pk=created["id"]).exists()


def test_a_token_that_expired_before_it_was_made_is_refused(personas):
    response = post(client_for(personas["bob"]), "/api/v1/tokens/",
                    {"expires": (timezone.now() - timedelta(days=1)).isoformat()})
    assert response.status_code == 400
    assert response.json() == {"expires": ["A new token must expire in the future (or leave it empty)."]}


# Validation findings


@pytest.fixture
def findings_world(payments, logistics, store):
    """A Logistics subscription that a Payments deny rule blocks, and a team without an owner."""
    topic = make_topic(payments, store, "orders.created")
    make_rule(payments, "orders.*", principal_team=logistics, subscribe=True, effect=AccessRule.DENY)
    sub = make_subscription(make_app(logistics, "tracker"), topic)
    Team.objects.create(name="Orphans", slug="orphans")
    return sub


@pytest.mark.parametrize("who", ["alice", "bob", "carol", "dave", "sam", "olga"])
def test_the_api_lists_the_findings_the_validation_page_shows(findings_world, personas, olga, who):
    user = {**personas, "olga": olga}[who]
    client = client_for(user)
    api = client.get("/api/v1/validation/").json()
    page = client.get(reverse("governance:validation")).content.decode()
    assert api["count"] == len(api["results"]) == len(re.findall(r'data-testid="finding-(?!total)', page))
    codes = {(f["code"], f["object_type"], f["object_id"]) for f in api["results"]}
    sees_the_subscription = who != "olga"
    assert (("subscription_denied", "subscriptions.subscription", findings_world.pk) in codes) is sees_the_subscription
    orphans = Team.objects.get(slug="orphans")
    assert ("team_without_owner", "meshadmin.team", orphans.pk) in codes
    [orphan] = [f for f in api["results"] if f["code"] == "team_without_owner" and f["object_id"] == orphans.pk]
    assert orphan["page_url"] == orphans.get_absolute_url() and orphan["title"] == "Team without an owner"


def test_findings_filter_by_code(findings_world, personas):
    client = client_for(personas["sam"])
    only = client.get("/api/v1/validation/", {"code": "team_without_owner"}).json()
    assert only["count"] >= 1 and {f["code"] for f in only["results"]} == {"team_without_owner"}
    assert client.get("/api/v1/validation/", {"code": "nonsense"}).status_code == 400
