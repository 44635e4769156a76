"""The topic's "Events" tab: pages, times, ids, filters and their bounds, per persona.

Events are in the real Redis stream of the topic, at known times (one a second from ``T0``), and
the page reads them through the store interface. ``page.reads`` counts what one request read.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from django.urls import reverse

from meshruntime.journey import JourneyRecorder
from tests.portal_support.factories import make_topic
from tests.portal_support.personas import client_for
from tracing.browser import PAGE

pytestmark = pytest.mark.django_db

T0 = 1_796_000_000_000  # epoch ms
SECRET = "iban-DE89-3704"
N = 120


@pytest.fixture
def mesh_redis(settings, key_prefix, redis_client):
    settings.MESH_KEY_PREFIX = key_prefix
    return redis_client


@pytest.fixture
def topic(payments, store, mesh_redis, keys):
    topic = make_topic(payments, store, "payments.settled")
    for i in range(N):
        mesh_redis.xadd(keys.topic(topic.name), {"event": orjson.dumps(event(i))}, id=f"{T0 + 1000 * i}-0")
    return topic


def event(i: int) -> dict:
    kind = "refund" if i % 10 == 0 else "settled"
    return {"specversion": "1.0", "id": f"pay-{i}", "source": "/ledger", "type": f"com.example.payment.{kind}",
            "subject": f"account-{i % 7}", "accountclass": "gold" if i % 3 == 0 else "basic",
            "data": {"iban": SECRET, "n": i}}


def browse(user, topic, **query):
    response = client_for(user).get(reverse("tracing:topic_events", args=[topic.pk]), query)
    return response, response.context["page"] if response.context else None


def ids(page) -> list[str]:
    return [row.event["id"] for row in page.rows]


def position(i: int) -> str:
    return f"{T0 + 1000 * i}-0"


def test_pages_go_newest_first_and_read_no_more_than_they_show(alice, topic):
    response, page = browse(alice, topic)
    assert response.status_code == 200
    assert ids(page) == [f"pay-{i}" for i in range(N - 1, N - 1 - PAGE, -1)]
    assert page.reads == PAGE and page.older == position(N - PAGE)
    _, older = browse(alice, topic, before=page.older)
    assert ids(older) == [f"pay-{i}" for i in range(N - 1 - PAGE, N - 1 - 2 * PAGE, -1)]
    assert older.reads == PAGE and older.newer == position(N - 1 - PAGE)
    _, newer = browse(alice, topic, after=older.newer)  # back up again
    assert ids(newer) == ids(page) and newer.reads == PAGE
    _, last = browse(alice, topic, before=position(5))
    assert ids(last) == ["pay-4", "pay-3", "pay-2", "pay-1", "pay-0"] and last.older is None
    html = response.content.decode()
    assert f'href="?before={page.older}" data-testid="older"' in html
    assert html.count('data-testid="event-row"') == PAGE
    assert ">null</textarea>" not in html and "}}]'></textarea>" in html  # no filter: an empty box
    assert 'data-testid="tab-events"' in html  # the tab on the topic's pages


def test_a_time_shows_the_events_around_it_with_a_marker(alice, topic):
    at = datetime.fromtimestamp((T0 + 1000 * 60 + 500) / 1000, UTC)  # between pay-60 and pay-61
    response, page = browse(alice, topic, at=at.strftime("%Y-%m-%dT%H:%M:%S"))
    # the form takes whole seconds: 60.0 s after T0, so pay-60 is the first at or after it
    assert ids(page)[: page.marker][-1] == "pay-60" and ids(page)[page.marker] == "pay-59"
    assert len(page.rows) == PAGE and page.reads == PAGE
    assert ids(page)[0] == f"pay-{60 + PAGE // 2 - 1}" and ids(page)[-1] == f"pay-{60 - PAGE // 2}"
    assert 'data-testid="time-marker"' in response.content.decode()
    _, empty = browse(alice, topic, at="2001-01-01T00:00")
    assert ids(empty)[-1] == "pay-0" and empty.marker == len(empty.rows) == PAGE // 2  # all newer than 2001


def test_an_event_id_opens_among_its_neighbours_found_through_its_journey(alice, topic, mesh_redis, keys):
    mesh_redis.rpush(keys.journey("pay-33"), JourneyRecorder("rt").step(
        "pay-33", "stored", at_ms=T0 + 33_000, topic=topic.name).step)
    response, page = browse(alice, topic, id="pay-33")
    assert page.found and [row.event["id"] for row in page.rows if row.is_target] == ["pay-33"]
    assert page.reads < 100  # a bounded read near the journey's time, then the page
    html = response.content.decode()
    assert 'data-event-id="pay-33" open' in html


def test_an_event_id_without_a_journey_is_searched_for_back_from_the_newest_within_the_bound(
        alice, topic, settings):
    settings.MESH_EVENT_SCAN_LIMIT = 30
    _, near = browse(alice, topic, id=f"pay-{N - 10}")
    assert near.found and near.scan is None
    response, far = browse(alice, topic, id="pay-2")
    assert not far.found and far.scan.scanned == 30 and far.scan.further == position(N - 30)
    assert far.reads == 30
    html = response.content.decode()
    assert 'data-testid="target-missing"' in html and "Scanned 30 events back to" in html


def test_a_filtered_search_scans_at_most_the_limit_and_says_how_far_it_got(alice, topic, settings):
    settings.MESH_EVENT_SCAN_LIMIT = 40
    filters = orjson.dumps([{"suffix": {"type": ".refund"}}]).decode()
    response, page = browse(alice, topic, filters=filters)
    assert ids(page) == ["pay-110", "pay-100", "pay-90", "pay-80"]
    assert page.scan.scanned == 40 and page.reads == 40 and page.scan.matches == 4
    assert page.scan.reached == datetime.fromtimestamp((T0 + 80_000) / 1000, UTC)
    html = response.content.decode()
    assert "Scanned 40 events back to" in html and "4 matches" in html
    assert 'data-testid="scan-further"' in html and f"before={position(80)}" in html
    _, further = browse(alice, topic, filters=filters, before=page.scan.further)
    assert ids(further) == ["pay-70", "pay-60", "pay-50", "pay-40"]
    _, text = browse(alice, topic, q="ACCOUNT-3", filters=filters)  # both: each must match
    assert ids(text) == ["pay-80"]
    settings.MESH_EVENT_SCAN_LIMIT = 10_000
    _, everything = browse(alice, topic, filters=filters)
    assert len(everything.rows) == 12 and everything.scan.further is None  # the whole topic: said so


def test_a_filtered_search_stops_at_a_page_of_matches_and_goes_on_from_the_last_examined(alice, topic):
    _, page = browse(alice, topic, q="pay")
    assert len(page.rows) == PAGE and page.scan.scanned == PAGE and page.scan.further == position(N - PAGE)


@pytest.mark.parametrize(("persona", "payload"), [
    ("alice", True), ("bob", True), ("dave", True), ("sam", True), ("carol", False)])
def test_who_sees_the_data_in_the_browser(personas, persona, payload, topic):
    response, page = browse(personas[persona], topic)
    html = response.content.decode()
    assert response.status_code == 200 and len(page.rows) == PAGE
    assert (SECRET in html) is payload and ("accountclass" in html) is payload
    assert "com.example.payment.settled" in html  # the public attributes, for everyone


def test_anonymous_visitors_are_sent_to_log_in(client, topic):
    assert client.get(reverse("tracing:topic_events", args=[topic.pk])).status_code == 302


def test_without_payload_access_filters_may_name_public_attributes_only(carol, alice, topic):
    by_extension = orjson.dumps([{"exact": {"accountclass": "gold"}}]).decode()
    response, _ = browse(carol, topic, filters=by_extension)
    assert response.status_code == 400
    assert "filters cannot name accountclass" in response.content.decode()
    _, allowed = browse(alice, topic, filters=by_extension)
    assert len(allowed.rows) == N // 3 and all(int(i[4:]) % 3 == 0 for i in ids(allowed))
    _, public = browse(carol, topic, filters=orjson.dumps([{"exact": {"subject": "account-3"}}]).decode())
    assert ids(public)[:2] == ["pay-115", "pay-108"]


@pytest.mark.parametrize(("query", "message"), [
    ({"filters": "[{"}, "Enter a valid JSON."),
    ({"filters": '[{"sql": "1=1"}]'}, "filters[0]"),
    ({"before": "nonsense"}, "A position is &lt;milliseconds&gt;-&lt;sequence&gt;."),
    ({"at": "yesterday"}, "Enter a valid date/time."),
    ({"at": "2026-12-06T14:05", "id": "pay-1"}, "Give one place to look at a time, not at and id."),
])
def test_bad_search_input_is_400_naming_what_is_wrong(alice, topic, query, message):
    response, _ = browse(alice, topic, **query)
    assert response.status_code == 400 and message in response.content.decode()


def test_an_empty_topic_says_so(alice, payments, store, mesh_redis):
    empty = make_topic(payments, store, "payments.empty")
    response, page = browse(alice, empty)
    assert page.rows == [] and 'data-testid="no-events"' in response.content.decode()


def test_numbers_beyond_64_bits_and_doubles_are_shown_as_stored(alice, payments, store, mesh_redis, keys):
    """The runtime stores data as the producer wrote it; the page shows those digits, never a double's."""
    topic = make_topic(payments, store, "payments.exact")
    data = b'{"amount": 123456789012345678901234567890, "rate": 0.1000000000000000000000001, "huge": 1e400}'
    stored = b'{"specversion":"1.0","id":"big-1","source":"/ledger","type":"t","data":' + data + b"}"
    mesh_redis.xadd(keys.topic(topic.name), {"event": stored}, id=f"{T0}-0")
    response, page = browse(alice, topic)
    assert ids(page) == ["big-1"]
    html = response.content.decode()
    assert "123456789012345678901234567890" in html and "0.1000000000000000000000001" in html and "1e400" in html
    assert "e+29" not in html and f"{len(data)} bytes" in html
