"""The chart pages and tabs, as every persona sees them (the data comes over /ws/charts/)."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.models import Application
from rollout.models import Runtime
from subscriptions.models import Subscription
from tests.portal_support.personas import client_for
from topics.models import Topic

pytestmark = pytest.mark.django_db


@pytest.fixture
def objects(payments, store):
    topic = Topic.objects.create(name="payments.orders", team=payments, store=store)
    app = Application.objects.create(name="billing", team=payments)
    subscription = Subscription.objects.create(topic=topic, application=app, webhook_url="https://x.example/h")
    runtime = Runtime.objects.create(runtime_id="billing-1", application="billing", last_seen=timezone.now())
    return {"topic": topic, "application": app, "subscription": subscription, "runtime": runtime}


def specs(page: str) -> list[dict]:
    found = re.search(r'<script id="chart-specs" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


PAGES = {
    "topic": ("topics:topic", "tracing:topic_traffic", "traffic", ["topic.published", "topic.refusals",
                                                                   "topic.routed", "topic.bytes"]),
    "subscription": ("subscriptions:subscription", "tracing:subscription_metrics", "metrics",
                     ["subscription.outcomes", "subscription.latency", "subscription.backlog",
                      "subscription.dead_letters"]),
    "application": ("governance:application", "tracing:application_traffic", "traffic",
                    ["application.published", "application.received", "application.refusals"]),
    "runtime": ("rollout:runtime", "tracing:runtime_metrics", "metrics",
                ["runtime.rates", "runtime.append_latency", "runtime.batch_size", "runtime.config_version"]),
}


@pytest.mark.parametrize("name", ["alice", "bob", "dave", "carol", "sam"])
@pytest.mark.parametrize("kind", list(PAGES))
def test_each_persona_sees_the_charts_of_what_they_may_see_and_nothing_else(objects, personas, name, kind):
    page_name, tab_name, tab, charts = PAGES[kind]
    obj = objects[kind]
    client = client_for(personas[name])
    hidden = kind == "subscription" and name == "carol"  # Payments' own subscription, to Payments' topic
    overview = client.get(reverse(page_name, args=[obj.pk]))
    tab_url = reverse(tab_name, args=[obj.pk])
    response = client.get(tab_url)
    if hidden:
        assert overview.status_code == 404 and response.status_code == 404
        return
    assert overview.status_code == 200 and f'href="{tab_url}" data-testid="tab-{tab}"' in overview.content.decode()
    assert response.status_code == 200
    page = response.content.decode()
    assert [s["chart"] for s in specs(page)] == charts
    assert all(s["object"] == obj.pk for s in specs(page))
    assert 'data-testid="range-picker"' in page and 'data-range="7d"' in page
    assert "tracing/charts.js" in page and "chartjs-4.6.1/chart.umd.min.js" in page
    assert "<script>" not in page.replace('<script id="chart-specs" type="application/json">', "")


def test_anonymous_visitors_are_sent_to_the_login_page(objects, client):
    for kind, (_page, tab_name, _tab, _charts) in PAGES.items():
        response = client.get(reverse(tab_name, args=[objects[kind].pk]))
        assert response.status_code == 302 and response["Location"].startswith("/login/"), kind


def test_the_home_page_is_a_live_dashboard_and_says_why_it_has_no_rates(personas, settings):
    settings.PROMETHEUS_URL = ""
    settings.PROMETHEUS_UNAVAILABLE = ""
    page = client_for(personas["carol"]).get("/").content.decode()
    assert 'data-testid="dashboard"' in page and "data-runtimes-panel" in page
    assert [s["chart"] for s in specs(page)] == ["mesh.events", "mesh.errors", "mesh.busiest_topics",
                                                 "mesh.largest_lag", "mesh.most_dead_letters"]
    assert 'data-testid="prometheus-missing"' in page and "No Prometheus is configured" in page
    assert "PROMETHEUS_URL" in page
    settings.PROMETHEUS_URL = "http://127.0.0.1:9090"
    page = client_for(personas["carol"]).get("/").content.decode()
    assert 'data-testid="prometheus-missing"' not in page
