"""The journey page, its API and the "event id" search, against the real Redis.

Steps are written the way runtimes write them (``JourneyRecorder`` steps through the store's
``record_journey``), events appended through the store, so the page reads what a runtime leaves.
Payments owns ``orders.created``; carol (Logistics) sees it but not its payloads.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import orjson
import pytest
from django.urls import reverse
from django.utils import timezone

from meshruntime.journey import JourneyRecorder
from meshruntime.store import AppendEntry, open_store
from rollout.models import Runtime
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_subscription, make_topic
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db

SECRET = "card-4111-1111"  # in the data; whoever may not see payloads must never get it


@pytest.fixture
def mesh_redis(settings, key_prefix, redis_client):
    settings.MESH_KEY_PREFIX = key_prefix
    return redis_client


@pytest.fixture
def topic(payments, store, mesh_redis):
    return make_topic(payments, store, "orders.created")


@pytest.fixture
def record(redis_url, key_prefix):
    """``record(steps, events=[(topic, event dict or its JSON text)])``: journey steps and events as
    a runtime writes them (events appended first, so a stored step finds its event); returns the
    stream ids."""

    def write(steps, events=()):
        async def run():
            store = open_store(redis_url, prefix=key_prefix)
            try:
                ids = await store.append_many([AppendEntry(t, e if isinstance(e, bytes) else orjson.dumps(e))
                                               for t, e in events])
                await store.record_journey(steps)
                return ids
            finally:
                await store.close()

        return asyncio.run(run())

    return write


def event(event_id="evt-1", **data):
    return {"specversion": "1.0", "id": event_id, "source": "/shop", "type": "com.example.order.created",
            "subject": "o-1", "customerid": "c-42", "data": {"card": SECRET, **data}}


def delivered_journey(record, subscription_id: str, event_id="evt-1"):
    """accepted -> stored (publish runtime), then a failed attempt, a second that delivers, acked
    (delivery runtime). Written out of order: the page orders by time."""
    publisher, deliverer = JourneyRecorder("rt-publish"), JourneyRecorder("rt-deliver")
    now = int(timezone.now().timestamp() * 1000)
    ids = record([
        deliverer.step(event_id, "attempt", at_ms=now + 40, subscription=subscription_id, attempt=1, status=500,
                       latency_ms=3.5, error=f"HTTP 500: could not charge {SECRET}", outcome="retry"),
        deliverer.step(event_id, "attempt", at_ms=now + 1240, subscription=subscription_id, attempt=2,
                       status=200, latency_ms=2.25, error=None, outcome="delivered"),
        deliverer.step(event_id, "acked", at_ms=now + 1240, subscription=subscription_id, attempts=2, status=200),
    ])
    ids = record([
        publisher.step(event_id, "accepted", at_ms=now, topic="orders.created", application="checkout",
                       key_prefix="abcd1234"),
        publisher.step(event_id, "stored", at_ms=now + 1, topic="orders.created"),
    ], events=[("orders.created", event(event_id))])
    return ids[0]


def test_a_journey_shows_its_steps_in_order_with_the_time_between_them(alice, topic, logistics, record):
    subscription = make_subscription(make_app(logistics, "tracker"), topic, Subscription.ACTIVE)
    position = delivered_journey(record, subscription.subscription_id)
    response = client_for(alice).get(reverse("tracing:journey", args=["evt-1"]))
    assert response.status_code == 200
    journey = response.context["journey"]
    assert [s.kind for s in journey.steps] == ["accepted", "stored", "attempt", "attempt", "acked"]
    assert [s.since_previous_ms for s in journey.steps] == [None, 1, 39, 1200, 0]
    assert [s.runtime for s in journey.steps] == ["rt-publish"] * 2 + ["rt-deliver"] * 3
    assert journey.outcome == "delivered" and journey.topic == topic
    [track] = journey.tracks
    assert (track.subscription, track.outcome, track.attempts) == (subscription, "acked", 2)
    assert journey.steps[1].position == position and journey.steps[1].store == topic.store
    html = response.content.decode()
    assert f'data-testid="stored-position">{position}<' in html
    assert "with key <code>abcd1234</code>" in html and "+1.2 s" in html
    assert f'href="{subscription.get_absolute_url()}"' in html
    assert 'id="journey-data"' in html and "tracing/journey.js" in html  # the timeline's data and code


def test_a_refusal_names_the_deciding_rule_or_the_schema_path(alice, topic, record):
    recorder = JourneyRecorder("rt-1")
    record([recorder.step("evt-9", "denied", topic="orders.created", application="checkout", reason="forbidden",
                          status=403, message="denied by rule 7", rule="rule-7"),
            recorder.step("evt-8", "denied", topic="orders.created", application="checkout",
                          reason="schema_mismatch", status=400, message="at data.amount: 'x' is not a number",
                          path="data.amount")])
    page = client_for(alice).get(reverse("tracing:journey", args=["evt-9"]))
    assert page.context["journey"].outcome == "denied"
    assert f'href="{reverse("governance:accessrule", args=[7])}" data-testid="deciding-rule">rule-7<' in \
        page.content.decode()
    page = client_for(alice).get(reverse("tracing:journey", args=["evt-8"]))
    assert 'data-testid="schema-path">data.amount<' in page.content.decode()


@pytest.mark.parametrize(("persona", "payload"), [
    ("alice", True), ("bob", True), ("dave", True), ("sam", True),  # the topic's team (any role), staff
    ("carol", False),  # another team without a subscription: steps yes, anything quoting the data no
])
def test_who_sees_the_payload_on_the_journey_page_and_the_api(personas, persona, payload, topic, record):
    delivered_journey(record, "sub-99")
    client = client_for(personas[persona])
    page = client.get(reverse("tracing:journey", args=["evt-1"]))
    api = client.get(reverse("api:event-journey", args=["evt-1"]))
    assert page.status_code == api.status_code == 200
    html, body = page.content.decode(), api.json()
    assert [s["step"] for s in body["steps"]] == ["accepted", "stored", "attempt", "attempt", "acked"]
    assert body["payload_visible"] is payload and body["event"]["id"] == "evt-1"
    for text in (html, api.content.decode()):
        assert (SECRET in text) is payload, persona
        assert ("c-42" in text) is payload, persona  # extensions travel with the data
    if not payload:
        assert body["steps"][2]["masked"] == ["error"] and "error" not in body["steps"][2]
        assert body["event"]["masked"] is True and body["event"]["size"] > 0
        assert 'data-testid="data-masked"' in html


def test_the_api_gives_the_events_data_indented_with_every_digit_it_was_published_with(alice, topic, record):
    written = {  # the data as the producer wrote it, and as the journey must give it
        "evt-short": (b'{"price":1.50,"count":1e5}', '{\n  "price": 1.50,\n  "count": 1e5\n}'),
        "evt-long": (b'{"ratio":0.1000000000000000055511151231257827,"n":12345678901234567890123}',
                     '{\n  "ratio": 0.1000000000000000055511151231257827,\n  "n": 12345678901234567890123\n}'),
    }
    recorder = JourneyRecorder("rt-publish")
    for event_id, (data, _shown) in written.items():
        attributes = orjson.dumps({key: value for key, value in event(event_id).items() if key != "data"})
        record([recorder.step(event_id, "accepted", topic="orders.created", application="checkout"),
                recorder.step(event_id, "stored", topic="orders.created")],
               events=[("orders.created", attributes[:-1] + b',"data":' + data + b"}")])
    for event_id, (data, shown) in written.items():
        stored = client_for(alice).get(reverse("api:event-journey", args=[event_id])).json()["event"]
        assert (stored["data_kind"], stored["data_text"], stored["size"]) == ("json", shown, len(data)), event_id


def test_anonymous_visitors_get_the_login_page_and_401(client, topic, record):
    delivered_journey(record, "sub-1")
    assert client.get(reverse("tracing:journey", args=["evt-1"])).status_code == 302
    assert client.get(reverse("api:event-journey", args=["evt-1"])).status_code == 401


def test_a_journey_on_a_topic_outside_the_catalog_is_404_but_for_staff(alice, sam, mesh_redis, record):
    record([JourneyRecorder("rt").step("evt-x", "denied", topic="nope.nope", application="checkout",
                                       reason="unknown_topic", status=404, message="unknown topic 'nope.nope'")])
    for client in (client_for(alice),):
        assert client.get(reverse("tracing:journey", args=["evt-x"])).status_code == 404
        assert client.get(reverse("api:event-journey", args=["evt-x"])).status_code == 404
    assert client_for(sam).get(reverse("tracing:journey", args=["evt-x"])).status_code == 200


def _beat(runtime_id: str, rate: float | None, ttl: int | None, *, seen=None) -> Runtime:
    return Runtime.objects.create(runtime_id=runtime_id, journey_sample_rate=rate, journey_ttl_seconds=ttl,
                                  last_seen=seen or timezone.now())


def _id(sampled_at: float, wanted: bool) -> str:
    recorder = JourneyRecorder("x", sample_rate=sampled_at)
    return next(f"evt-{i}" for i in range(10_000) if recorder.sampled(f"evt-{i}") is wanted)


def test_an_id_without_a_journey_says_which_cause_is_likely_from_the_runtimes_reports(carol, mesh_redis):
    client = client_for(carol)

    def likely(event_id):
        response = client.get(reverse("tracing:journey", args=[event_id]))
        api = client.get(reverse("api:event-journey", args=[event_id]))
        assert response.status_code == api.status_code == 404
        assert api.json()["likely"] == response.context["missing"].likely
        return response

    assert likely("evt-1").context["missing"].likely == "unknown"  # nobody reports: nothing to say
    _beat("rt-1", 0.1, 3600)
    _beat("rt-2", 0.1, 3600)
    _beat("rt-old", 1.0, 60, seen=timezone.now() - timedelta(days=2))  # gone: not counted
    page = likely(_id(0.1, False))
    missing = page.context["missing"]
    assert missing.likely == "not_sampled" and "10 %" in missing.message
    assert [(s.rate, s.ttl_seconds, s.runtimes, s.records_it) for s in missing.sampling] == [(0.1, 3600, 2, False)]
    html = page.content.decode()
    assert "10 %" in html and "1 h" in html and 'data-likely="not_sampled"' in html
    expired = likely(_id(0.1, True)).context["missing"]
    assert expired.likely == "expired_or_never_seen" and "kept 1 h" in expired.message
    _beat("rt-3", 1.0, 86400)
    _beat("rt-4", 0.1, None)  # a TTL not reported beside one that is: still sorted, still said
    _beat("rt-5", None, None)  # an older runtime: reports neither
    depends = likely(_id(0.1, False)).context["missing"]
    assert depends.likely == "depends" and "kept 1 h or 1 d" in depends.message
    assert [(s.rate, s.ttl_seconds) for s in depends.sampling] == [(0.1, 3600), (0.1, None), (1.0, 86400),
                                                                  (None, None)]


def test_the_event_id_search_goes_to_the_journey_and_refuses_nonsense(carol, mesh_redis):
    client = client_for(carol)
    response = client.get(reverse("tracing:journey_search"), {"id": "  order 42/7?  "})
    assert response.status_code == 302 and response["Location"] == "/events/order%2042/7%3F/"
    assert client.get(response["Location"]).context["missing"].event_id == "order 42/7?"
    assert client.get(reverse("tracing:journey_search")).status_code == 200  # the form
    empty = client.get(reverse("tracing:journey_search"), {"id": " "})
    assert empty.status_code == 400 and "Give an event id." in empty.content.decode()
    long = client.get(reverse("tracing:journey_search"), {"id": "x" * 1025})
    assert long.status_code == 400 and "at most 1024 characters; this one has 1025" in long.content.decode()
    assert client.get(reverse("api:event-journey", args=["x" * 1025])).status_code == 400
    assert 'data-testid="nav-event-id"' in client.get("/").content.decode()  # the box in the navigation


def test_a_dead_letter_on_the_delivery_tab_links_to_its_journey(carol, logistics, topic, mesh_redis, key_prefix):
    subscription = make_subscription(make_app(logistics, "tracker"), topic, Subscription.ACTIVE)
    mesh_redis.xadd(f"{key_prefix}dlq:{subscription.subscription_id}", {
        "event": orjson.dumps(event("evt-dead/1")), "reason": "rejected: HTTP 400", "status": "400",
        "attempts": "1", "source_id": "1-0", "at": "1"})
    html = client_for(carol).get(reverse("subscriptions:subscription_delivery", args=[subscription.pk]))
    assert 'href="/events/evt-dead/1/" title="The event\'s journey" data-testid="dead-letter-journey"' in \
        html.content.decode()


def test_the_api_schema_documents_the_journey_and_its_answers(carol):
    schema = client_for(carol).get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/events/{event_id}/journey/"]["get"]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "404", "429"}
    assert operation["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "MissingJourney")
