"""In a real browser: send a test event from the topic page (its data checked as it is typed), a
real runtime delivers it, and its journey is opened from the answer, from the Events tab and from
a dead letter: accepted → stored → attempt → acked for one subscriber, dead-lettered for another."""

from __future__ import annotations

import pytest
from aiohttp import web

from meshadmin.models import Team
from meshruntime.state import TopicSchema
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_rule, make_topic
from tests.portal_support.mesh import BROKER_PREFIX, ORDER_SCHEMA
from tests.portal_support.runtime import push_now
from tests.portal_support.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def mesh_redis(settings, key_prefix, redis_client):
    settings.MESH_KEY_PREFIX = key_prefix
    settings.MESH_PUSH_QUEUE = f"{key_prefix}push"  # commits enqueue pushes there; no worker runs them
    yield redis_client
    for key in redis_client.scan_iter(match=f"{BROKER_PREFIX}*{key_prefix}*"):
        redis_client.delete(key)


async def refuse(received, request):
    return web.Response(status=400, text="unknown order")


def steps(page) -> list[tuple[str, str]]:
    rows = page.locator("[data-testid=journey-step]")
    return [(rows.nth(i).get_attribute("data-lane"), rows.nth(i).get_attribute("data-step"))
            for i in range(rows.count())]


def open_until(page, url: str, done, what: str) -> None:
    """The journey page is a snapshot: load it again until ``done(page)``, within a bound."""
    def loaded():
        page.goto(url)
        return done(page)

    wait_for(loaded, 30, what, interval=0.2)


def test_a_test_event_from_the_browser_is_followed_to_its_subscribers(
        logged_in, alice, payments, logistics, store, mesh_redis, mesh_runtime, redis_url, key_prefix, tmp_path):
    topic = make_topic(payments, store, "orders.created", data_schema=ORDER_SCHEMA, example_event={
        "specversion": "1.0", "id": "x", "type": "com.example.order.created", "source": "/shop",
        "data": {"order_id": "o-1"}})
    make_rule(payments, "orders.*", application=make_app(payments, "checkout"), publish=True)
    tracker_hook, auditor_hook = mesh_runtime.receiver(), mesh_runtime.receiver(respond=refuse)
    tracker = Subscription.objects.create(topic=topic, application=make_app(logistics, "tracker"),
                                          state=Subscription.ACTIVE, webhook_url=tracker_hook.url)
    auditor = Subscription.objects.create(
        topic=topic, application=make_app(Team.objects.create(name="Audit", slug="audit"), "auditor"),
        state=Subscription.ACTIVE, webhook_url=auditor_hook.url)
    assert push_now() == "published"
    mesh_runtime.start(redis_url, key_prefix, tmp_path)
    mesh_runtime.reconciled()

    page = logged_in("alice")
    page.goto(topic.get_absolute_url())
    page.click("[data-testid=action-test-event]")
    page.select_option("select[name=application]", label="checkout")
    status = page.locator("[data-testid=schema-status]")
    page.wait_for_selector("[data-testid=schema-status][data-valid=true]")  # the example matches
    page.fill("textarea[name=data]", '{"order_id": 5}')
    page.wait_for_selector("[data-testid=schema-status][data-valid=false]")
    assert "data.order_id" in status.inner_text() and "not of type 'string'" in status.inner_text()
    page.fill("textarea[name=data]", '{"order_id": "o-77"}')
    page.wait_for_selector("[data-testid=schema-status][data-valid=true]")
    page.click("[data-testid=send-test-event]")
    answer = page.locator("[data-testid=test-event-answer]")
    assert answer.get_attribute("data-status") == "202"
    event_id = answer.locator("code").inner_text()
    wait_for(lambda: event_id in tracker_hook.ids(), 30, "the tracker's webhook to get the event")

    page.click("[data-testid=test-event-journey]")
    journey_url = page.url
    lane = tracker.subscription_id
    open_until(page, journey_url, lambda p: (lane, "acked") in steps(p), "the acked step")
    recorded = steps(page)
    publish = [step for where, step in recorded if where == "publish"]
    assert publish == ["accepted", "stored"]
    assert [step for where, step in recorded if where == lane] == ["attempt", "acked"]
    assert recorded.index(("publish", "stored")) < recorded.index((lane, "attempt"))
    dots = page.locator("[data-testid=journey-timeline] svg circle")
    dots.first.wait_for()
    assert dots.count() == len(recorded)  # the drawing has every step
    assert page.locator("[data-testid=stored-position]").inner_text()  # where the store keeps it

    page.goto(topic.get_absolute_url())
    page.click("[data-testid=tab-events]")
    row = page.locator(f"[data-testid=event-row][data-event-id='{event_id}']")
    row.locator("summary").click()
    assert '"o-77"' in row.locator("[data-testid=event-data]").inner_text()  # opened: the event's detail
    row.locator("[data-testid=row-journey]").click()
    page.wait_for_url(journey_url)

    open_until(page, journey_url, lambda p: (auditor.subscription_id, "dead_lettered") in steps(p),
               "the auditor's dead letter")
    page.goto(f"/subscriptions/{auditor.pk}/delivery/")
    page.click(f"[data-testid=dead-letter-journey]:has-text('{event_id}')")
    page.wait_for_url(journey_url)
    assert page.inner_text("[data-testid=journey-outcome]") == "dead-lettered"


SCHEMA_CASES = [
    # (schema, data): every keyword of the subset, valid and not, each with one problem at most
    ({"type": "object", "required": ["order_id"]}, {"order_id": "o"}),
    ({"type": "object", "required": ["order_id"]}, {}),
    ({"type": "object", "properties": {"n": {"type": "integer"}}}, {"n": 1.5}),
    ({"type": "object", "properties": {"n": {"type": "integer"}}}, {"n": 2}),
    ({"type": ["string", "null"]}, None),
    ({"type": ["string", "null"]}, 3),
    ({"type": "number"}, True),
    ({"enum": ["a", 1, None]}, 1),
    ({"enum": ["a", 1, None]}, "b"),
    ({"const": {"a": [1, 2]}}, {"a": [1, 2]}),
    ({"const": {"a": [1, 2]}}, {"a": [2, 1]}),
    ({"type": "string", "pattern": "^o-[0-9]+$"}, "o-12"),
    ({"type": "string", "pattern": "^o-[0-9]+$"}, "x-12"),
    ({"type": "string", "minLength": 2, "maxLength": 3}, "é"),
    ({"type": "string", "minLength": 2, "maxLength": 3}, "abcd"),
    ({"type": "string", "format": "email"}, "not an address"),  # format is an annotation only
    ({"minimum": 1, "maximum": 3}, 3),
    ({"exclusiveMinimum": 1}, 1),
    ({"exclusiveMaximum": 1}, 0.5),
    ({"multipleOf": 0.5}, 2.5),
    ({"multipleOf": 3}, 10),
    ({"type": "array", "items": {"type": "string"}, "minItems": 1}, ["a", "b"]),
    ({"type": "array", "items": {"type": "string"}}, ["a", 2]),
    ({"type": "array", "maxItems": 1}, [1, 2]),
    ({"type": "array", "uniqueItems": True}, [{"a": 1}, {"a": 1}]),
    ({"type": "object", "minProperties": 1}, {}),
    ({"type": "object", "maxProperties": 1}, {"a": 1, "b": 2}),
    ({"type": "object", "properties": {"a": {}}, "additionalProperties": False}, {"a": 1, "b": 2}),
    ({"type": "object", "additionalProperties": {"type": "integer"}}, {"a": 1, "b": "x"}),
    ({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object", "properties": {
        "price": {"type": "number"}}}}}}, {"items": [{"price": 1}, {"price": "free"}]}),
    ({"not": {"type": "string"}}, "s"),
    ({"allOf": [{"type": "integer"}, {"minimum": 5}]}, 4),
    ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, 1.5),
    ({"oneOf": [{"type": "integer"}, {"minimum": 0}]}, 3),
    ({"oneOf": [{"type": "integer"}, {"minimum": 0}]}, -3),
    ({"$defs": {"id": {"type": "string", "minLength": 3}}, "type": "object",
      "properties": {"id": {"$ref": "#/$defs/id"}}}, {"id": "ab"}),
    ({"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"},
                                                          "v": {"type": "integer"}}}},
      "$ref": "#/$defs/node"}, {"v": 1, "next": {"v": 2, "next": {"v": "three"}}}),
    (True, {"anything": 1}),
    ({"type": "object", "properties": {"never": False}}, {"never": 1}),  # reported at the object, as jsonschema does
    ({"type": "array", "items": False}, [1]),
]


def test_the_browsers_schema_check_agrees_with_the_runtimes(logged_in, alice):
    page = logged_in("alice")
    answers = page.evaluate("""async (cases) => {
        const check = await import("/static/tracing/schema_check.js");
        return cases.map(([schema, data]) => check.validate(schema, data));
    }""", [list(case) for case in SCHEMA_CASES])
    for (schema, data), answer in zip(SCHEMA_CASES, answers, strict=True):
        problem = TopicSchema(schema).check(data)
        assert (answer is None) == (problem is None), (schema, data, answer, problem)
        if problem is not None:
            assert (answer["path"], answer["pointer"]) == (problem.path, problem.pointer), (schema, data)
