"""The event stores page and a runtime's missing stores: what the runtimes report in their
heartbeats, and what each engine reports of its topics, asked by the portal (topics/engines.py)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from django.urls import reverse
from django.utils import timezone

from meshruntime.store import AppendEntry, open_store
from rollout.models import Runtime
from rollout.registry import runtime_from_heartbeat
from tests.portal_support.personas import client_for
from topics import engines
from topics.models import EventStore, Topic

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(mesh_redis, payments, settings):
    default = EventStore.objects.create(name="main", kind="redis", connection="default")
    orders = EventStore.objects.create(name="orders", kind="kafka", connection="orders")
    topic = Topic.objects.create(name="billing.invoiced", team=payments, store=default, retention_max_length=500)
    Topic.objects.create(name="orders.created", team=payments, store=orders)
    now = timezone.now()
    Runtime.objects.create(runtime_id="billing-1", application="billing", last_seen=now, stores={
        "main": {"kind": "redis", "connection": "default", "state": "reachable"},
        "orders": {"kind": "kafka", "connection": "orders", "state": "missing",
                   "error": "event store 'orders' (kafka): this runtime has no connection 'orders' "
                            "(start it with --store orders=URL)"}})
    return default, orders, topic


def _append(settings, topic: str, n: int) -> None:
    async def run():
        store = open_store(settings.REDIS_URL, prefix=settings.MESH_KEY_PREFIX)
        try:
            await store.append_many([AppendEntry(topic, orjson.dumps({"id": f"e{i}"})) for i in range(n)])
            await store.ensure_group(topic, "sub-999", "0")
        finally:
            await store.close()

    asyncio.run(run())


def test_every_persona_sees_each_store_with_its_kind_topics_reports_and_engine_figures(catalog, personas, settings):
    default, orders, topic = catalog
    _append(settings, topic.name, 3)
    for name in personas:
        response = client_for(personas[name]).get(reverse("rollout:store_status"))
        assert response.status_code == 200, name
        html = response.content.decode()
        assert 'data-testid="store-main"' in html and 'data-testid="store-orders"' in html
        assert "Redis Streams" in html and "Kafka" in html
        assert "billing.invoiced" in html and "orders.created" in html
        assert "reachable" in html and "missing" in html and "billing-1" in html
        # the portal has no connection "orders": it says so, naming the setting
        assert "the portal has no connection &#x27;orders&#x27; for event store &#x27;orders&#x27;" in html
        assert "MESH_STORES" in html
        assert "500 events" in html  # the catalog's retention beside the engine's figures


def test_the_figures_are_the_engines_own(catalog, settings):
    default, _orders, topic = catalog
    _append(settings, topic.name, 3)  # a group, sub-999, with the 3 events still to deliver
    figures = engines.topic_figures(default, {topic.name: ["sub-999"], "nothing.here": []})
    assert (figures[topic.name].length, figures[topic.name].backlog, figures[topic.name].held) == (3, 3, 0)
    assert figures[topic.name].oldest is not None
    assert (figures["nothing.here"].length, figures["nothing.here"].oldest) == (0, None)


def test_the_anonymous_are_sent_to_sign_in(catalog, client):
    response = client.get(reverse("rollout:store_status"))
    assert response.status_code == 302 and "login" in response["Location"]


def test_a_runtime_page_says_which_stores_it_cannot_use_and_what_that_refuses(catalog, personas):
    runtime = Runtime.objects.get(runtime_id="billing-1")
    html = client_for(personas["dave"]).get(runtime.get_absolute_url()).content.decode()
    assert 'data-testid="runtime-missing-stores"' in html
    assert "refuses publishes (503) to the topics of" in html and "<strong>orders</strong>" in html
    assert "start it with --store orders=URL" in html


def test_heartbeats_carry_the_stores_into_the_registry():
    beat = {"runtime_id": "rt-1", "stores": orjson.dumps({"orders": {"kind": "kafka", "state": "missing",
                                                                     "error": "no connection"}}).decode()}
    runtime = runtime_from_heartbeat(beat, timezone.now())
    assert runtime.missing_stores == [("orders", "no connection")]
    assert runtime_from_heartbeat({"runtime_id": "rt-2", "stores": "not json"}, timezone.now()).stores == {}
