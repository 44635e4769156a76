"""Every event page and API of this part, walked as every persona, staff and anonymous included.

Payments owns ``payments.settled`` with one stored event and its journey; ``billing`` (Payments)
may publish there, Logistics' ``tracker`` may not. The table says what each persona gets, and
whether the payload (``SECRET``) is in the answer.
"""

from __future__ import annotations

import orjson
import pytest
from django.urls import reverse

from meshruntime.journey import JourneyRecorder
from rollout import push
from tests.portal_support.factories import make_app, make_rule, make_topic
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db

SECRET = "walk-secret-7731"
PERSONAS = ("anonymous", "alice", "bob", "dave", "carol", "sam")
SENDS_AS = {"alice": "billing", "bob": "billing", "sam": "billing", "carol": "tracker", "dave": "billing"}


@pytest.fixture
def world(personas, payments, logistics, store, settings, key_prefix, redis_client, keys):
    settings.MESH_KEY_PREFIX = key_prefix
    settings.MESH_PUSH_QUEUE = f"{key_prefix}push"
    topic = make_topic(payments, store, "payments.settled")
    make_rule(payments, "payments.*", application=make_app(payments, "billing"), publish=True)
    make_app(logistics, "tracker")
    assert push.push().outcome == "published"
    stream_id = redis_client.xadd(keys.topic(topic.name), {"event": orjson.dumps({
        "specversion": "1.0", "id": "walk-1", "source": "/s", "type": "t", "data": {"secret": SECRET}})}).decode()
    at = int(stream_id.split("-")[0])
    redis_client.rpush(keys.journey("walk-1"), *(step.step for step in (
        JourneyRecorder("rt").step("walk-1", "accepted", at_ms=at, topic=topic.name, application="billing"),
        JourneyRecorder("rt").step("walk-1", "stored", at_ms=at, topic=topic.name))))
    return topic


def client(personas, name):
    return client_for(None if name == "anonymous" else personas[name])


def post_test_event(http, topic, application):
    return http.post(reverse("api:topic-test-events", args=[topic.name]), orjson.dumps(
        {"application": application, "type": "t", "source": "/walk", "data": {"n": 1}}),
        content_type="application/json")


# persona: (journey page, journey API, missing id page, missing id API, search, events tab, test event form,
#           test event API, payload seen)
EXPECTED = {
    "anonymous": (302, 401, 302, 401, 302, 302, 302, 401, False),
    "alice": (200, 200, 404, 404, 200, 200, 200, 202, True),
    "bob": (200, 200, 404, 404, 200, 200, 200, 202, True),
    "dave": (200, 200, 404, 404, 200, 200, 403, 403, True),  # a viewer: sees, may not send
    "carol": (200, 200, 404, 404, 200, 200, 200, 403, False),  # sends as tracker: no rule allows it
    "sam": (200, 200, 404, 404, 200, 200, 200, 202, True),
}


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_persona_gets_what_the_table_says(persona, personas, world):
    http = client(personas, persona)
    pages = [
        http.get(reverse("tracing:journey", args=["walk-1"])),
        http.get(reverse("api:event-journey", args=["walk-1"])),
        http.get(reverse("tracing:journey", args=["never-seen"])),
        http.get(reverse("api:event-journey", args=["never-seen"])),
        http.get(reverse("tracing:journey_search")),
        http.get(reverse("tracing:topic_events", args=[world.pk])),
        http.get(reverse("tracing:test_event", args=[world.pk])),
        post_test_event(http, world, SENDS_AS.get(persona, "billing")),
    ]
    *statuses, payload = EXPECTED[persona]
    assert [p.status_code for p in pages] == statuses
    for page in (pages[0], pages[1], pages[5]):
        assert (SECRET in page.content.decode()) is payload, (persona, page.request["PATH_INFO"])
    if persona != "anonymous":
        topic_page = http.get(world.get_absolute_url()).content.decode()
        assert ('data-testid="action-test-event"' in topic_page) is (persona != "dave")
        assert 'data-testid="tab-events"' in topic_page
