"""A topic's store: chosen on its form and in the API; moving a topic to another store is refused
while a subscription has events of it left to deliver there (they would be left behind), with a
message that says how to drain it; MQTT holds no topic. The engine is asked for real (the
suite's Redis is the portal's connection "default")."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from django.urls import reverse

from meshruntime.store import AppendEntry, open_store
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_subscription
from tests.portal_support.personas import client_for
from topics.models import EventStore, Topic

pytestmark = pytest.mark.django_db


@pytest.fixture
def stores(settings, key_prefix, redis_client):
    settings.MESH_KEY_PREFIX = key_prefix
    main = EventStore.objects.create(name="main", kind="redis", connection="default")
    other = EventStore.objects.create(name="other", kind="redis", connection="default")
    return main, other


@pytest.fixture
def subscribed(stores, payments):
    main, _other = stores
    topic = Topic.objects.create(name="billing.invoiced", team=payments, store=main)
    subscription = make_subscription(make_app(payments), topic, state=Subscription.ACTIVE)
    return topic, subscription


def _engine(settings, work):
    async def run():
        store = open_store(settings.REDIS_URL, prefix=settings.MESH_KEY_PREFIX)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _publish_undelivered(settings, topic: Topic, group: str, n: int) -> None:
    async def work(store):
        await store.ensure_group(topic.name, group, "0")
        await store.append_many([AppendEntry(topic.name, orjson.dumps({"id": f"e{i}"})) for i in range(n)])

    _engine(settings, work)


def _deliver_everything(settings, topic: Topic, group: str) -> None:
    async def work(store):
        consumer = store.consumer(topic.name, group, "rt-test")
        while held := await consumer.read(100):
            await consumer.ack(held)

    _engine(settings, work)


def _form(topic: Topic, store: EventStore) -> dict:
    return {"name": topic.name, "team": topic.team_id, "store": store.pk, "lifecycle": "active"}


def test_a_topic_with_undelivered_events_is_not_moved_and_the_form_says_how_to_drain_it(
        subscribed, stores, personas, settings):
    topic, subscription = subscribed
    _, other = stores
    _publish_undelivered(settings, topic, subscription.subscription_id, 3)
    response = client_for(personas["bob"]).post(reverse("topics:topic_edit", args=[topic.pk]), _form(topic, other))
    assert response.status_code == 400  # a form with errors
    html = response.content.decode()
    assert "billing.invoiced has 3 undelivered events on main" in html
    assert "to drain it, let its subscriptions deliver every event" in html
    topic.refresh_from_db()
    assert topic.store.name == "main"

    _deliver_everything(settings, topic, subscription.subscription_id)
    response = client_for(personas["bob"]).post(reverse("topics:topic_edit", args=[topic.pk]), _form(topic, other))
    assert response.status_code == 302
    topic.refresh_from_db()
    assert topic.store.name == "other"


def test_the_api_refuses_the_same_move_with_the_same_message(subscribed, stores, personas, settings):
    topic, subscription = subscribed
    _, other = stores
    _publish_undelivered(settings, topic, subscription.subscription_id, 1)
    response = client_for(personas["alice"]).patch(reverse("api:topic-detail", args=[topic.pk]),
                                                   json.dumps({"store": other.pk}), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["store"] == [
        "billing.invoiced has 1 undelivered event on main; to drain it, let its subscriptions deliver every event "
        "(or skip them to now on their Delivery tabs), pause publishing to it, then move it"]


def test_a_store_the_portal_cannot_ask_refuses_the_move_saying_why(subscribed, personas, settings):
    topic, _subscription = subscribed
    topic.store = EventStore.objects.create(name="far", kind="kafka", connection="far")
    topic.save()
    target = EventStore.objects.get(name="other")
    response = client_for(personas["bob"]).post(reverse("topics:topic_edit", args=[topic.pk]), _form(topic, target))
    html = response.content.decode()
    assert "cannot tell whether billing.invoiced has undelivered events on far" in html
    assert "MESH_STORES" in html
    topic.refresh_from_db()
    assert topic.store.name == "far"


def test_no_topic_lives_on_an_mqtt_broker(stores, payments, personas):
    broker = EventStore.objects.create(name="devices", kind="mqtt", connection="devices")
    data = {"name": "sensors.temperature", "team": payments.pk, "store": broker.pk, "lifecycle": "active"}
    response = client_for(personas["bob"]).post(reverse("topics:topic_add"), data)
    assert response.status_code == 400
    assert "devices is an MQTT broker, which keeps no events" in response.content.decode()
    assert not Topic.objects.filter(name="sensors.temperature").exists()


def test_a_topic_without_subscriptions_moves_freely(stores, payments, personas):
    main, other = stores
    topic = Topic.objects.create(name="quiet.topic", team=payments, store=main)
    response = client_for(personas["bob"]).post(reverse("topics:topic_edit", args=[topic.pk]), _form(topic, other))
    assert response.status_code == 302
    topic.refresh_from_db()
    assert topic.store == other
