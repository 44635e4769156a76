"""A topic's responder: the subscription whose webhook answers Apache EventMesh requests (code 101).

Set on the subscription's page and in the API, at most one per topic (as the runtime's config
validation says), shown on the page, and compiled into the MeshConfig document."""

from __future__ import annotations

import pytest
from django.urls import reverse

from meshruntime.config import seal, validate_document
from meshruntime.state import MeshState
from rollout.compiler import compile_mesh_config
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_subscription, make_topic
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db

DELIVERY = {"webhook_url": "https://billing.example.com/hooks/replies", "delivery_mode": "structured",
            "timeout_ms": 5000, "max_attempts": 8, "backoff_base_ms": 200, "backoff_cap_ms": 60000,
            "max_in_flight": 16, "filters": "[]"}


def request_page(user, topic, app, **extra):
    data = {"topic": topic.pk, "application": app.pk, **DELIVERY, **extra}
    return client_for(user).post(reverse("subscriptions:subscription_add"), data)


def test_a_member_requests_a_responder_subscription_and_its_page_says_so(payments, store, personas):
    topic = make_topic(payments, store, "TEST-TOPIC-HTTP-SYNC")
    response = request_page(personas["bob"], topic, make_app(payments), responder="on")
    assert response.status_code == 302, response.content.decode()
    sub = Subscription.objects.get()
    assert sub.responder is True
    html = client_for(personas["alice"]).get(sub.get_absolute_url()).content.decode()
    assert "Yes: its 2xx answers are the replies to requests on TEST-TOPIC-HTTP-SYNC" in html


def test_a_topic_has_at_most_one_responder_on_the_page_and_in_the_api(payments, store, personas):
    topic = make_topic(payments, store, "TEST-TOPIC-HTTP-SYNC")
    first = make_subscription(make_app(payments, "first-responder"), topic, Subscription.ACTIVE, responder=True)
    page = request_page(personas["bob"], topic, make_app(payments), responder="on")
    assert page.status_code == 400
    message = f"TEST-TOPIC-HTTP-SYNC already has a responder: {first.subscription_id} of first-responder"
    assert message in page.content.decode() and 'data-testid="error-responder"' in page.content.decode()
    api = client_for(personas["sam"]).post(
        reverse("api:subscription-list"),
        {"topic": topic.pk, "application": make_app(payments).pk, **DELIVERY, "filters": [], "responder": True},
        content_type="application/json")
    assert api.status_code == 400 and message in str(api.json()["responder"])
    # an ordinary subscription to the same topic is fine, and so is a responder once the first is revoked
    assert request_page(personas["bob"], topic, make_app(payments)).status_code == 302
    Subscription.objects.filter(pk=first.pk).update(state=Subscription.REVOKED)
    assert request_page(personas["bob"], topic, make_app(payments), responder="on").status_code == 302
    assert Subscription.objects.filter(responder=True).exclude(state=Subscription.REVOKED).count() == 1


def test_the_api_changes_the_flag_like_any_delivery_setting(payments, store, personas):
    sub = make_subscription(make_app(payments), make_topic(payments, store), Subscription.ACTIVE)
    response = client_for(personas["bob"]).patch(reverse("api:subscription-detail", args=[sub.pk]),
                                                 {"responder": True}, content_type="application/json")
    assert response.status_code == 200 and response.json()["responder"] is True
    sub.refresh_from_db()
    assert sub.responder is True


def test_the_compiled_document_names_the_responder_and_the_runtime_applies_it(payments, store):
    topic = make_topic(payments, store, "TEST-TOPIC-HTTP-SYNC")
    responder = make_subscription(make_app(payments), topic, Subscription.ACTIVE, responder=True)
    plain = make_subscription(make_app(payments), topic, Subscription.ACTIVE)
    doc = validate_document(seal(compile_mesh_config(), 1))
    entries = {s["id"]: s for s in doc["subscriptions"]}
    assert entries[responder.subscription_id]["responder"] is True
    assert "responder" not in entries[plain.subscription_id]  # absent when false: checksums stay as they were
    assert MeshState.build(doc).topics["TEST-TOPIC-HTTP-SYNC"].responder == responder.subscription_id


def test_the_api_names_the_other_subscription_for_the_one_open_subscription_rule_too(payments, store, personas):
    app, topic = make_app(payments, "billing"), make_topic(payments, store, "orders.created")
    make_subscription(app, topic)
    response = client_for(personas["bob"]).post(
        reverse("api:subscription-list"), {"topic": topic.pk, "application": app.pk, **DELIVERY, "filters": []},
        content_type="application/json")
    assert response.status_code == 400
    assert response.json()["topic"] == ["billing already has an open subscription to orders.created: change that "
                                         "one, or revoke it first."]
