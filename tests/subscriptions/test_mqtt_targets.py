"""A subscription delivering to an MQTT topic instead of a webhook: the form, the API, the rules
(one target, structured mode, no responder, a topic without wildcards), and the compiled document."""

from __future__ import annotations

import pytest
from django.urls import reverse

from meshruntime.config import seal, validate_document
from rollout.compiler import compile_mesh_config
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_topic
from tests.portal_support.personas import client_for
from topics.models import EventStore

pytestmark = pytest.mark.django_db

DELIVERY = {"delivery_mode": "structured", "timeout_ms": 5000, "max_attempts": 8, "backoff_base_ms": 200,
            "backoff_cap_ms": 60000, "max_in_flight": 16, "filters": "[]"}


@pytest.fixture
def broker(db) -> EventStore:
    return EventStore.objects.create(name="devices", kind="mqtt", connection="devices")


def request_page(user, topic, app, **fields):
    data = {"topic": topic.pk, "application": app.pk, **DELIVERY, **fields}
    return client_for(user).post(reverse("subscriptions:subscription_add"), data)


def test_a_subscription_to_an_mqtt_topic_is_requested_shown_and_compiled(payments, store, broker, personas):
    topic = make_topic(payments, store, "alerts.raised")
    response = request_page(personas["bob"], topic, make_app(payments, "dashboard"), mqtt_store=broker.pk,
                            mqtt_topic="devices/alerts")
    assert response.status_code == 302, response.content.decode()
    sub = Subscription.objects.get()
    assert sub.target_url == "mqtt://devices/devices/alerts" and sub.webhook_url == ""
    html = client_for(personas["dave"]).get(sub.get_absolute_url()).content.decode()
    assert 'data-testid="mqtt-target"' in html and "devices/alerts" in html
    Subscription.objects.filter(pk=sub.pk).update(state=Subscription.ACTIVE)
    doc = compile_mesh_config()
    [entry] = doc["subscriptions"]
    assert entry["delivery"]["url"] == "mqtt://devices/devices/alerts"
    validate_document(seal(doc, 1))  # the runtime takes it


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"webhook_url": "https://a.example.com/h", "mqtt_topic": "devices/alerts"}, "webhook_url",
     "Give a webhook URL or an MQTT store and topic, not both."),
    ({"mqtt_topic": "devices/#"}, "mqtt_topic", "An MQTT topic to publish to has no wildcards (+ or #)."),
    ({"mqtt_topic": "devices/alerts", "delivery_mode": "binary"}, "delivery_mode",
     "An MQTT target takes structured mode"),
    ({"mqtt_topic": "/devices"}, "mqtt_topic", "has no empty level"),
    ({}, "mqtt_topic", "Name the MQTT topic to publish to"),
])
def test_the_rules_of_an_mqtt_target_on_the_page_and_in_the_api(payments, store, broker, personas, fields, field,
                                                              message):
    topic = make_topic(payments, store)
    app = make_app(payments)
    page = request_page(personas["bob"], topic, app, mqtt_store=broker.pk, **fields)
    assert page.status_code == 400 and message in page.content.decode()
    api = client_for(personas["sam"]).post(
        reverse("api:subscription-list"),
        {"topic": topic.pk, "application": app.pk, **DELIVERY, "filters": [], "mqtt_store": broker.pk, **fields},
        content_type="application/json")
    assert api.status_code == 400 and message in str(api.json()[field])
    assert not Subscription.objects.exists()


def test_only_an_mqtt_store_is_a_target(payments, store, personas):
    topic = make_topic(payments, store)
    page = request_page(personas["bob"], topic, make_app(payments), mqtt_store=store.pk, mqtt_topic="a/b")
    assert page.status_code == 400  # not among the choices: the field offers MQTT stores only
    assert not Subscription.objects.exists()
