"""``build_mesh()``: the small mesh that the compiler, push, registry and config version tests
share: two teams, three topics, two applications, keys, rules and subscriptions of every kind;
``mesh_redis``: the fixture that gives a test its own key prefix and push queue on the shared
Redis (the rollout's conftest, and the other suites' tests that push, import it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from governance.models import AccessRule, Application, ApplicationKey, RoutingRule
from meshadmin.models import Team
from subscriptions.models import Subscription
from tests.portal_support.factories import make_key
from topics.models import EventStore, Topic

#: Celery's key prefix on the broker (one per pytest-xdist worker: see meshadmin/settings/test.py)
BROKER_PREFIX = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]


@pytest.fixture
def mesh_redis(settings, key_prefix, redis_client):
    """This test's own key prefix and task queue on the shared Redis."""
    settings.MESH_KEY_PREFIX = key_prefix
    settings.MESH_PUSH_QUEUE = f"{key_prefix}push"
    yield redis_client
    for key in redis_client.scan_iter(match=f"{BROKER_PREFIX}*{key_prefix}*"):
        redis_client.delete(key)

ORDER_SCHEMA = {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}}


@dataclass
class Mesh:
    store: EventStore
    payments: Team
    logistics: Team
    topics: dict[str, Topic] = field(default_factory=dict)
    apps: dict[str, Application] = field(default_factory=dict)
    keys: dict[str, ApplicationKey] = field(default_factory=dict)
    rules: dict[str, AccessRule] = field(default_factory=dict)
    subs: dict[str, Subscription] = field(default_factory=dict)
    routes: dict[str, RoutingRule] = field(default_factory=dict)


def build_mesh() -> Mesh:
    """Two teams, three topics, two applications with active, revoked and expired keys, rules of
    every principal kind, subscriptions in every state, enabled and disabled routing rules."""
    now = timezone.now()
    payments = Team.objects.get_or_create(name="Payments", slug="payments")[0]
    logistics = Team.objects.get_or_create(name="Logistics", slug="logistics")[0]
    mesh = Mesh(EventStore.objects.get_or_create(name="default")[0], payments, logistics)
    mesh.topics = {
        "orders.created": Topic.objects.create(name="orders.created", team=payments, store=mesh.store,
                                               data_schema=ORDER_SCHEMA, retention_max_age=86400),
        "orders.shipped": Topic.objects.create(name="orders.shipped", team=logistics, store=mesh.store,
                                               lifecycle=Topic.DEPRECATED, sunset="2027-01-31",
                                               retention_max_length=1000),
        "audit.orders": Topic.objects.create(name="audit.orders", team=payments, store=mesh.store),
    }
    mesh.apps = {
        "billing": Application.objects.create(name="billing", team=payments),
        "shipping": Application.objects.create(name="shipping", team=logistics),
    }
    mesh.keys = {
        "billing": make_key(mesh.apps["billing"]),
        "billing-expiring": make_key(mesh.apps["billing"], expires=now + timedelta(days=30)),
        "billing-expired": make_key(mesh.apps["billing"], expires=now - timedelta(seconds=1)),
        "shipping-revoked": make_key(mesh.apps["shipping"], revoked=now),
    }
    rule = AccessRule.objects.create
    mesh.rules = {
        "billing-publish": rule(team=payments, principal_kind=AccessRule.APPLICATION,
                                principal_application=mesh.apps["billing"], topic_pattern="orders.*", publish=True),
        "logistics-subscribe": rule(team=logistics, principal_kind=AccessRule.TEAM, principal_team=logistics,
                                    topic_pattern="orders.shipped", subscribe=True),
        "nobody-audit": rule(team=payments, principal_kind=AccessRule.EVERYONE, topic_pattern="audit.*",
                             publish=True, effect=AccessRule.DENY, description="only routes write audit"),
    }
    sub = Subscription.objects.create
    mesh.subs = {
        "active": sub(topic=mesh.topics["orders.created"], application=mesh.apps["shipping"], state="active",
                      webhook_url="http://shipping.internal/hooks", filters=[{"prefix": {"type": "com.ex"}}]),
        "paused": sub(topic=mesh.topics["orders.shipped"], application=mesh.apps["billing"], state="paused",
                      webhook_url="https://billing.internal/hooks", delivery_mode="structured"),
        "requested": sub(topic=mesh.topics["orders.shipped"], application=mesh.apps["shipping"],
                         webhook_url="http://shipping.internal/other"),
        "revoked": sub(topic=mesh.topics["orders.created"], application=mesh.apps["billing"], state="revoked",
                       webhook_url="http://billing.internal/old"),
    }
    mesh.routes = {
        # orders.* covers Logistics' orders.shipped too: Logistics approved it
        "audit": RoutingRule.objects.create(team=payments, source_pattern="orders.*", order=10, source_team=logistics),
        "disabled": RoutingRule.objects.create(team=payments, source_pattern="orders.created", enabled=False),
        "nowhere": RoutingRule.objects.create(team=payments, source_pattern="orders.shipped"),
    }
    mesh.routes["audit"].targets.set([mesh.topics["audit.orders"]])
    mesh.routes["disabled"].targets.set([mesh.topics["audit.orders"]])
    return mesh
