"""Routing rules and the target topic's schema (issue 13, item 2), as the portal shows them.

- Saving a rule whose target's schema refuses data that its source admits warns (page and API),
  and the rule's page keeps that as a finding; a rule between compatible schemas says nothing.
- Copies a real runtime dropped because they failed the target's schema are a finding on the
  rule's page (and the Validation page), with a link to the last one's journey, whose step names
  the schema path and quotes the schema's message only to those who may see the payload.

Payments owns ``orders.created`` (its schema: an ``order_id``, a number ``amount``) and
``audit.orders`` (an integer ``amount`` is required there); bob is a member of Payments, carol
of Logistics (sees the catalog, not Payments' payloads).
"""

from __future__ import annotations

import orjson
import pytest
from django.urls import reverse

from governance.models import RoutingRule
from meshruntime.cloudevents import CloudEvent
from meshruntime.keys import KeySpace
from meshruntime.state import Identity
from rollout import push
from tests.portal_support.factories import make_app, make_rule, make_topic
from tests.portal_support.mesh import mesh_redis  # noqa: F401 - a fixture: this test's key prefix and queue
from tests.portal_support.personas import client_for
from tests.portal_support.runtime import mesh_runtime, wait_for  # noqa: F401 - a fixture: a real runtime

pytestmark = pytest.mark.django_db

ORDER = {"type": "object", "required": ["order_id"],
         "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}}}
AUDIT = {"type": "object", "required": ["order_id", "amount"],
         "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer"}}}
WARNING = ("audit.orders's schema refuses data that orders.created admits (data.amount: required by the target, "
           "not by the source; data.amount: the source admits number, the target only integer)")


@pytest.fixture
def topics(payments, store):
    return (make_topic(payments, store, "orders.created", data_schema=ORDER),
            make_topic(payments, store, "audit.orders", data_schema=AUDIT))


def form(payments, target, source="orders.created"):
    return {"team": payments.pk, "source_pattern": source, "targets": [target.pk], "filters": "", "enabled": "on",
            "order": 10, "description": ""}


# -- when a rule is saved ----------------------------------------------------------------------


def test_saving_a_rule_into_a_stricter_schema_warns_and_saves(personas, payments, topics):
    response = client_for(personas["bob"]).post(reverse("governance:routingrule_add"), form(payments, topics[1]),
                                                follow=True)
    assert response.status_code == 200
    rule = RoutingRule.objects.get()
    warnings = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert warnings == [f"Saved {rule.rule_id}, but {WARNING}: the runtimes drop such copies (the events stay in "
                        "orders.created)."]
    page = client_for(personas["carol"]).get(rule.get_absolute_url()).content.decode()
    assert 'data-testid="finding-route_schema_gap"' in page and "data.amount: the source admits number" in page


def test_the_api_answers_the_warnings_with_the_rule(personas, payments, topics):
    body = {"team": payments.pk, "source_pattern": "orders.*", "targets": [topics[1].pk], "enabled": True}
    response = client_for(personas["bob"]).post(reverse("api:routingrule-list"), body,
                                                content_type="application/json")
    assert response.status_code == 201, response.json()
    [warning] = response.json()["schema_warnings"]
    assert warning.startswith(WARNING)
    listed = client_for(personas["carol"]).get(reverse("api:routingrule-list")).json()["results"]
    assert [r["schema_warnings"] for r in listed] == [[warning]]


def test_a_source_without_a_schema_is_warned_about(personas, payments, store, topics):
    make_topic(payments, store, "orders.raw")
    response = client_for(personas["bob"]).post(reverse("governance:routingrule_add"),
                                                form(payments, topics[1], "orders.raw"), follow=True)
    [warning] = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert "data: the source has no schema: it admits any data" in warning


@pytest.mark.parametrize("target_schema", [ORDER, None, {"type": "object"}])
def test_a_target_that_takes_what_the_source_admits_says_nothing(target_schema, personas, payments, store, topics):
    target = make_topic(payments, store, "audit.copies", data_schema=target_schema)
    response = client_for(personas["bob"]).post(reverse("governance:routingrule_add"), form(payments, target),
                                                follow=True)
    assert RoutingRule.objects.count() == 1
    assert [m for m in response.context["messages"] if m.level_tag == "warning"] == []
    assert 'finding-route_schema_gap' not in response.content.decode()


# -- what the runtimes dropped ------------------------------------------------------------------


@pytest.mark.slow
def test_copies_a_runtime_dropped_are_a_finding_on_the_rule_page(
        personas, payments, topics, mesh_redis, mesh_runtime, redis_url, key_prefix, tmp_path):  # noqa: F811
    checkout = make_app(payments, "checkout")
    make_rule(payments, "orders.*", application=checkout, publish=True)
    rule = RoutingRule.objects.create(team=payments, source_pattern="orders.created")
    rule.targets.set([topics[1]])
    assert push.push().outcome == "published"
    runtime = mesh_runtime.start(redis_url, key_prefix, tmp_path)

    def publish(event_id: str, data: dict):
        event = CloudEvent.from_structured({"specversion": "1.0", "id": event_id, "source": "/checkout",
                                            "type": "com.example.order.created", "data": data})
        return mesh_runtime.loop.run(runtime.publisher.publish(runtime.state, Identity("checkout", "payments", ""),
                                                               "orders.created", [event]))

    publish("fits-1", {"order_id": "o-1", "amount": 12})
    publish("fails-1", {"order_id": "o-2", "amount": 12.5})  # stored; its copy is dropped
    assert [e["id"] for e in _stream(mesh_redis, key_prefix, "orders.created")] == ["fits-1", "fails-1"]
    assert [e["id"] for e in _stream(mesh_redis, key_prefix, "audit.orders")] == ["fits-1"]

    client = client_for(personas["carol"])

    def finding():
        page = client.get(rule.get_absolute_url()).content.decode()
        return page if 'data-testid="finding-route_copies_refused"' in page else None

    page = wait_for(finding, 30, "the rule's page to show the dropped copy")
    assert f"{rule.rule_id} did not make 1 copy (1 into audit.orders)" in page
    assert "event fails-1 from orders.created into audit.orders, at data.amount (type)" in page
    assert f'href="{reverse("tracing:journey", args=["fails-1"])}" data-testid="finding-link"' in page
    assert "12.5" not in page  # nothing of the data on the rule's page
    validation = client_for(personas["bob"]).get(reverse("governance:validation")).content.decode()
    assert 'data-testid="finding-route_copies_refused"' in validation

    journey = client_for(personas["bob"]).get(reverse("tracing:journey", args=["fails-1"])).content.decode()
    assert "copy not made" in journey and 'data-testid="schema-path">data.amount<' in journey
    assert "12.5 is not of type" in journey  # Payments may see its payloads
    journey = client.get(reverse("tracing:journey", args=["fails-1"])).content.decode()
    assert "copy not made" in journey and "12.5 is not of type" not in journey  # carol may not


def _stream(redis_client, prefix: str, topic: str) -> list[dict]:
    return [orjson.loads(fields[b"event"]) for _id, fields in redis_client.xrange(KeySpace(prefix).topic(topic))]
