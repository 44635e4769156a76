"""In a real browser: an event's journey page loads its SkyWalking trace after the page and draws
the waterfall (static/tracing/trace.js), one row per span, the failed span marked.

Against the contract, not a live OAP: the stand-in OAP of tests/tracing/test_skywalking_traces.py
validates the portal's queries against the pinned query schema and answers through it.
"""

from __future__ import annotations

import orjson
import pytest

from meshruntime.journey import JourneyRecorder
from tests.portal_support.factories import make_app, make_topic
from tests.tracing.test_skywalking_traces import SPANS, TOPIC, TRACE, StandInOAP

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_journey_page_draws_the_events_trace(logged_in, alice, payments, store, settings, key_prefix,
                                                 redis_client, keys):
    settings.MESH_KEY_PREFIX = key_prefix
    topic = make_topic(payments, store, TOPIC)
    make_app(payments, "billing")
    stream_id = redis_client.xadd(keys.topic(topic.name), {"event": orjson.dumps(
        {"specversion": "1.0", "id": "evt-b", "source": "/s", "type": "t"})}).decode()
    at = int(stream_id.split("-")[0])
    recorder = JourneyRecorder("rt")
    redis_client.rpush(keys.journey("evt-b"), *(s.step for s in (
        recorder.step("evt-b", "accepted", at_ms=at, topic=topic.name, application="billing", trace_id=TRACE),
        recorder.step("evt-b", "stored", at_ms=at, topic=topic.name))))
    with StandInOAP() as oap:
        settings.SKYWALKING_URL = oap.url
        settings.SKYWALKING_UI_URL = ""
        page = logged_in("alice")
        page.goto("/events/evt-b/")
        rows = page.locator("[data-testid=trace-waterfall] [data-testid=waterfall-row]")
        rows.nth(len(SPANS) - 1).wait_for()
        assert rows.count() == len(SPANS)
        assert [rows.nth(i).get_attribute("data-kind") for i in range(rows.count())] == [
            "Entry", "Exit", "Entry", "Exit", "Entry"]
        assert page.locator("[data-testid=trace-waterfall] rect.bar.error").count() == 1
        assert page.locator("[data-testid=trace-span]").count() == len(SPANS)
        assert oap.invalid == [] and [v for _q, v in oap.queries] == [{"traceId": TRACE}]
