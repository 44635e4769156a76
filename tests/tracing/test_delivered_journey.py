"""A test event through the whole mesh: sent from the portal, delivered by a real runtime that
follows the pushed configuration, and followed on its journey to each subscriber's answer.

Payments' ``orders.created`` has two subscribers: Logistics' ``tracker`` answers 2xx, Audit's
``auditor`` refuses with 400 (dead-lettered at once). The runtime is a real one (its own config
watcher, delivery engine and journal) on the suite's Redis, under this test's key prefix.
"""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web
from django.urls import reverse

from meshadmin.models import Team
from rollout import push
from rollout.models import Runtime
from rollout.registry import HeartbeatIngester
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_rule, make_topic
from tests.portal_support.mesh import ORDER_SCHEMA
from tests.portal_support.personas import client_for
from tests.portal_support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture
def mesh_redis(settings, key_prefix, redis_client):
    settings.MESH_KEY_PREFIX = key_prefix
    settings.MESH_PUSH_QUEUE = f"{key_prefix}push"
    return redis_client


async def refuse(received, request):
    return web.Response(status=400, text="unknown order")


@pytest.fixture
def delivered_mesh(payments, logistics, store, mesh_redis, mesh_runtime, redis_url, key_prefix, tmp_path):
    """The topic, its two subscribers' webhooks, a pushed configuration and a runtime following it."""
    topic = make_topic(payments, store, "orders.created", data_schema=ORDER_SCHEMA)
    checkout = make_app(payments, "checkout")
    make_rule(payments, "orders.*", application=checkout, publish=True)
    tracker_hook, auditor_hook = mesh_runtime.receiver(), mesh_runtime.receiver(respond=refuse)
    tracker = Subscription.objects.create(topic=topic, application=make_app(logistics, "tracker"),
                                          state=Subscription.ACTIVE, webhook_url=tracker_hook.url)
    audit = Team.objects.create(name="Audit", slug="audit")
    auditor = Subscription.objects.create(topic=topic, application=make_app(audit, "auditor"),
                                          state=Subscription.ACTIVE, webhook_url=auditor_hook.url, max_attempts=3)
    assert push.push().outcome == "published"
    mesh_runtime.start(redis_url, key_prefix, tmp_path)
    mesh_runtime.reconciled()
    return {"topic": topic, "tracker": tracker, "auditor": auditor, "tracker_hook": tracker_hook,
            "auditor_hook": auditor_hook}


def test_a_test_event_reaches_the_webhooks_and_its_journey_shows_every_step(alice, carol, delivered_mesh,
                                                                           mesh_redis):
    client = client_for(alice)
    response = client.post(reverse("api:topic-test-events", args=["orders.created"]), orjson.dumps(
        {"application": "checkout", "type": "com.example.order.created", "source": "/portal",
         "data": {"order_id": "o-42"}}), content_type="application/json")
    assert response.status_code == 202, response.json()
    event_id = response.json()["id"]
    tracker, auditor = delivered_mesh["tracker"].subscription_id, delivered_mesh["auditor"].subscription_id
    wait_for(lambda: event_id in delivered_mesh["tracker_hook"].ids(), 30, "the tracker's webhook to get it")

    def outcomes():
        body = client.get(reverse("api:event-journey", args=[event_id])).json()
        return {s["subscription"]: s["outcome"] for s in body["subscriptions"]}

    wait_for(lambda: outcomes() == {tracker: "acked", auditor: "dead_lettered"}, 30, "both deliveries to end")
    journey = client.get(reverse("api:event-journey", args=[event_id])).json()
    by_lane = {}
    for step in journey["steps"]:
        by_lane.setdefault(step.get("subscription", "publish"), []).append(step["step"])
    assert by_lane == {"publish": ["accepted", "stored"], tracker: ["attempt", "acked"],
                       auditor: ["attempt", "dead_lettered"]}
    assert journey["steps"][0]["runtime"] == "portal"
    assert {s["runtime"] for s in journey["steps"][2:]} == {"rt-e2e"}  # delivered by the real runtime
    stored = journey["steps"][1]
    assert stored["position"] and journey["event"]["id"] == event_id
    assert journey["outcome"] == "dead_lettered"  # one subscriber gave up on it

    page = client.get(reverse("tracing:journey", args=[event_id])).content.decode()
    assert page.count('data-testid="journey-step"') == 6 and 'data-step="acked"' in page
    # the dead letter on the auditor's Delivery tab leads here (alice: the topic's side sees the tab)
    letters = client_for(carol).get(reverse("subscriptions:subscription_delivery",
                                            args=[delivered_mesh["tracker"].pk])).content.decode()
    assert 'data-testid="dead-letter-journey"' not in letters  # the tracker has none
    auditor_tab = client.get(reverse("subscriptions:subscription_delivery", args=[delivered_mesh["auditor"].pk]))
    assert f'href="/events/{event_id}/"' in auditor_tab.content.decode()


def test_the_runtime_reports_its_journey_sampling_in_its_heartbeats(delivered_mesh, mesh_redis):
    ingester = HeartbeatIngester(mesh_redis, consumer="test", block_ms=50)
    ingester.ensure_group()

    def reported():
        ingester.step()
        return Runtime.objects.filter(runtime_id="rt-e2e", journey_sample_rate__isnull=False).first()

    runtime = wait_for(reported, 30, "a heartbeat of the runtime")
    assert (runtime.journey_sample_rate, runtime.journey_ttl_seconds) == (1.0, 86_400)
