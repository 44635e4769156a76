"""Traces from SkyWalking in the portal, checked against the OAP's published query protocol.

These tests check the contract, not a live OAP (which cannot run here): a stand-in OAP (a real
HTTP server in the test) validates every GraphQL query the portal sends against the pinned query
schema (``tests/contracts.py``, graphql-core) and answers by executing it against that schema, so
the answers have exactly the shape the schema gives them. They skip, saying why, when the
contracts folder is absent.

Payments owns ``payments.settled`` with one event and its journey, whose ``accepted`` step names
trace ``T1``; ``billing`` is Payments' application. The table at the end walks every persona.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from django.urls import reverse
from graphql import graphql_sync, parse, validate

from meshruntime.journey import JourneyRecorder
from meshruntime.sw8 import Sw8
from rollout import push
from tests.contracts import query_schema
from tests.portal_support.factories import make_app, make_rule, make_topic
from tests.portal_support.personas import client_for
from tracing import skywalking

pytestmark = pytest.mark.django_db

TRACE = "T1"
TOPIC = "payments.settled"
SECRET_TAG = "SELECT card FROM wallets -- secret-7731"  # what a subscriber's own agent may report


def span(segment: str, span_id: int, parent: int, service: str, endpoint: str, kind: str, start: int, end: int,
         *, refs=(), error=False, tags=(), layer="Http", peer=None) -> dict[str, Any]:
    return {"traceId": TRACE, "segmentId": segment, "spanId": span_id, "parentSpanId": parent,
            "refs": [{"traceId": TRACE, "parentSegmentId": s, "parentSpanId": p, "type": "CROSS_PROCESS"}
                     for s, p in refs],
            "serviceCode": service, "serviceInstanceName": f"{service}-1", "startTime": start, "endTime": end,
            "endpointName": endpoint, "type": kind, "peer": peer, "component": "Python", "isError": error,
            "layer": layer, "tags": [{"key": k, "value": v} for k, v in tags], "logs": [], "attachedEvents": []}


T0 = 1_790_000_000_000
#: What the OAP answers for the mesh's segments of one publish and its delivery (listed out of
#: order, as the OAP may), and the subscriber's own agent's segment.
SPANS = [
    span("seg-del", 1, 0, "shipping", "Webhook/sub-1", "Exit", T0 + 9, T0 + 20, peer="10.0.0.9:80",
         tags=[("mq.topic", TOPIC), ("http.status_code", "200")]),
    span("seg-pub", 0, -1, "billing", f"POST /v1/topics/{TOPIC}/events", "Entry", T0, T0 + 5,
         tags=[("mq.topic", TOPIC), ("mesh.application", "billing")]),
    span("seg-pub", 1, 0, "billing", f"Mesh/{TOPIC}/Produce", "Exit", T0 + 1, T0 + 4, layer="MQ", peer="redis:6379",
         tags=[("mq.topic", TOPIC)]),
    span("seg-del", 0, -1, "shipping", f"Mesh/{TOPIC}/Deliver/sub-1", "Entry", T0 + 8, T0 + 21, layer="MQ",
         refs=[("seg-pub", 1)], tags=[("mq.topic", TOPIC)]),
    span("seg-sub", 0, -1, "receiver", "POST /hook", "Entry", T0 + 10, T0 + 19, refs=[("seg-del", 1)],
         error=True, tags=[("db.statement", SECRET_TAG)]),
]
FOREIGN_SPANS = [span("seg-x", 0, -1, "other", "GET /x", "Entry", T0, T0 + 1, tags=[("mq.topic", "hr.salaries")])]


class StandInOAP:
    """``POST /graphql`` like the OAP: each query validated against the pinned schema, then executed
    against it with the data below. ``slow`` holds answers until released (a slow OAP)."""

    def __init__(self) -> None:
        self.schema = query_schema()
        self.queries: list[tuple[str, dict[str, Any]]] = []
        self.invalid: list[str] = []
        self.traces: dict[str, list[dict[str, Any]]] = {TRACE: SPANS, "T-foreign": FOREIGN_SPANS}
        self.slow = threading.Event()
        self.slow.set()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def root(self) -> dict[str, Any]:
        def query_trace(info, traceId, **_):
            return {"spans": self.traces.get(traceId, [])}

        def query_basic_traces(info, condition=None, **_):
            return {"traces": [{"segmentId": "seg-pub", "endpointNames": [f"POST /v1/topics/{TOPIC}/events"],
                                "duration": 21, "start": str(T0), "isError": True, "traceIds": [TRACE]}]}

        return {"queryTrace": query_trace, "queryBasicTraces": query_basic_traces}

    def _handler(self):
        oap = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                document, variables = body["query"], body.get("variables") or {}
                oap.slow.wait(10)
                errors = validate(oap.schema, parse(document))
                if errors:
                    oap.invalid.append(f"{document}: {errors}")
                    answer = {"errors": [{"message": e.message} for e in errors]}
                else:
                    oap.queries.append((document, variables))
                    result = graphql_sync(oap.schema, document, root_value=oap.root(), variable_values=variables)
                    answer = {"data": result.data}
                    if result.errors:
                        oap.invalid.append(f"{document}: {result.errors}")
                        answer["errors"] = [{"message": e.message} for e in result.errors]
                raw = orjson.dumps(answer)
                self.send_response(200 if not errors else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler

    def __enter__(self) -> StandInOAP:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.slow.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def oap(settings):
    with StandInOAP() as stand_in:
        settings.SKYWALKING_URL = stand_in.url
        settings.SKYWALKING_UI_URL = "http://sw-ui.example/trace/{trace_id}"
        settings.SKYWALKING_TIMEOUT = 1
        yield stand_in
    assert stand_in.invalid == [], "the portal sent a query the schema refuses, or got an answer it does not fit"


@pytest.fixture
def world(personas, payments, logistics, store, settings, key_prefix, redis_client, keys):
    settings.MESH_KEY_PREFIX = key_prefix
    settings.MESH_PUSH_QUEUE = f"{key_prefix}push"
    topic = make_topic(payments, store, TOPIC)
    application = make_app(payments, "billing")
    make_rule(payments, "payments.*", application=application, publish=True)
    assert push.push().outcome == "published"
    recorder = JourneyRecorder("rt")
    for event_id, fields in (("evt-traced", {"trace_id": TRACE}), ("evt-plain", {})):
        stream_id = redis_client.xadd(keys.topic(topic.name), {"event": orjson.dumps({
            "specversion": "1.0", "id": event_id, "source": "/s", "type": "t", "data": {"n": 1},
            **({"sw8": Sw8(TRACE, "seg-pub", 1, "billing", "rt", "POST", "redis:6379").encode()}
               if event_id == "evt-plain" else {})})}).decode()
        at = int(stream_id.split("-")[0])
        redis_client.rpush(keys.journey(event_id), *(step.step for step in (
            recorder.step(event_id, "accepted", at_ms=at, topic=topic.name, application="billing", **fields),
            recorder.step(event_id, "stored", at_ms=at, topic=topic.name))))
    return topic, application


def client(personas, name):
    return client_for(None if name == "anonymous" else personas[name])


def test_an_events_trace_is_read_by_the_id_its_journey_names(oap, world, personas):
    http = client(personas, "alice")
    page = http.get(reverse("tracing:journey", args=["evt-traced"])).content.decode()
    fragment_url = reverse("tracing:event_trace", args=["evt-traced"])
    assert f'hx-get="{fragment_url}"' in page and 'data-testid="step-trace-id">T1<' in page

    fragment = http.get(fragment_url)
    assert fragment.status_code == 200
    html = fragment.content.decode()
    [(_document, variables)] = oap.queries
    assert variables == {"traceId": TRACE}
    assert 'data-testid="trace-waterfall"' in html and 'href="http://sw-ui.example/trace/T1"' in html
    data = json.loads(fragment.context["trace_json"])  # what the page's data-trace attribute holds
    # a waterfall in tree order: publish → append → delivery → webhook → the subscriber's own span
    assert [(s["endpoint"], s["depth"]) for s in data["spans"]] == [
        (f"POST /v1/topics/{TOPIC}/events", 0), (f"Mesh/{TOPIC}/Produce", 1), (f"Mesh/{TOPIC}/Deliver/sub-1", 2),
        ("Webhook/sub-1", 3), ("POST /hook", 4)]
    assert [s["offset_ms"] for s in data["spans"]] == [0, 1, 8, 9, 10]
    assert data["duration_ms"] == 21 and data["spans"][-1]["error"] is True
    assert SECRET_TAG in html  # alice may see the topic's payloads: the spans' tags too


def test_without_a_trace_id_in_the_journey_the_stored_events_sw8_names_the_trace(oap, world, personas):
    fragment = client(personas, "alice").get(reverse("tracing:event_trace", args=["evt-plain"]))
    assert fragment.status_code == 200 and fragment.context["trace_id"] == TRACE
    assert oap.queries[0][1] == {"traceId": TRACE}


def test_a_topics_traces_tab_searches_by_its_tag_and_opens_a_trace(oap, world, personas):
    topic, _application = world
    http = client(personas, "bob")
    url = reverse("tracing:topic_traces", args=[topic.pk])
    page = http.get(url, {"range": "6h", "state": "ERROR", "min_ms": "5", "max_ms": "900"})
    assert page.status_code == 200
    [(_document, variables)] = oap.queries
    condition = variables["condition"]
    assert condition["tags"] == [{"key": "mq.topic", "value": TOPIC}]
    assert condition["traceState"] == "ERROR" and condition["queryOrder"] == "BY_START_TIME"
    assert (condition["minTraceDuration"], condition["maxTraceDuration"]) == (5, 900)
    assert condition["paging"] == {"pageNum": 1, "pageSize": 20}
    duration = condition["queryDuration"]
    assert duration["step"] == "MINUTE" and len(duration["start"]) == len("2026-11-28 1430")
    html = page.content.decode()
    assert html.count('data-testid="trace-row"') == 1 and "trace=T1" in html

    opened = http.get(url, {"trace": TRACE})
    assert 'data-testid="trace-waterfall"' in opened.content.decode()
    foreign = http.get(url, {"trace": "T-foreign"}).content.decode()  # a trace of another topic: not shown
    assert 'data-testid="trace-foreign"' in foreign and "hr.salaries" not in foreign


def test_an_applications_traces_tab_searches_by_its_service(oap, world, personas):
    _topic, application = world
    page = client(personas, "alice").get(reverse("tracing:application_traces", args=[application.pk]))
    assert page.status_code == 200
    condition = oap.queries[0][1]["condition"]
    assert condition["serviceId"] == base64.b64encode(b"billing").decode() + ".1" and "tags" not in condition


def test_bad_search_input_is_a_400_naming_the_field(oap, world, personas):
    topic, _application = world
    page = client(personas, "alice").get(reverse("tracing:topic_traces", args=[topic.pk]),
                                         {"min_ms": "50", "max_ms": "10", "range": "3y"})
    assert page.status_code == 400
    errors = page.context["form"].errors
    assert "below at least" in errors["max_ms"][0] and "range" in errors
    assert oap.queries == []  # nothing asked of SkyWalking for a search that makes no sense


def test_an_oap_that_is_down_or_slow_is_said_plainly_and_bounded(oap, world, personas, settings):
    topic, _application = world
    http = client(personas, "alice")
    oap.slow.clear()  # answers are held past the timeout (1 s)
    started = time.monotonic()
    page = http.get(reverse("tracing:topic_traces", args=[topic.pk]))
    assert time.monotonic() - started < 5
    assert "did not answer within 1 s" in page.content.decode()
    oap.slow.set()
    settings.SKYWALKING_URL = "http://127.0.0.1:9"  # nothing listens there
    html = http.get(reverse("tracing:event_trace", args=["evt-traced"])).content.decode()
    assert 'data-testid="trace-problem"' in html and "cannot be reached" in html


def test_without_skywalking_url_the_panels_say_so_and_ask_nothing(world, personas, settings):
    settings.SKYWALKING_URL = ""
    topic, application = world
    http = client(personas, "alice")
    for url in (reverse("tracing:journey", args=["evt-traced"]), reverse("tracing:topic_traces", args=[topic.pk]),
                reverse("tracing:application_traces", args=[application.pk])):
        html = http.get(url).content.decode()
        assert 'data-testid="trace-not-configured"' in html and "SKYWALKING_URL" in html, url


def test_the_waterfall_puts_spans_under_their_parents_across_segments():
    spans = [skywalking._span(s) for s in SPANS]  # noqa: SLF001 - the layout itself
    ordered = skywalking._waterfall(spans)  # noqa: SLF001
    assert [(s.segment_id, s.span_id) for s in ordered] == [
        ("seg-pub", 0), ("seg-pub", 1), ("seg-del", 0), ("seg-del", 1), ("seg-sub", 0)]
    orphan = skywalking._span(span("seg-lost", 0, -1, "x", "e", "Entry", T0, T0 + 1, refs=[("gone", 3)]))  # noqa: SLF001
    assert skywalking._waterfall([orphan])[0].depth == 0  # noqa: SLF001 - a parent not reported: a root


# persona: (journey's trace, topic tab, application tab, tags shown)
EXPECTED = {
    "anonymous": (302, 302, 302, False),
    "alice": (200, 200, 200, True),
    "bob": (200, 200, 200, True),
    "dave": (200, 200, 200, True),  # a viewer of Payments: sees payloads
    "carol": (200, 200, 200, False),  # another team: the trace, not its tags
    "sam": (200, 200, 200, True),
}


@pytest.mark.parametrize("persona", list(EXPECTED))
def test_every_persona_gets_what_the_table_says(persona, oap, world, personas):
    topic, application = world
    http = client(personas, persona)
    pages = [http.get(reverse("tracing:event_trace", args=["evt-traced"])),
             http.get(reverse("tracing:topic_traces", args=[topic.pk]), {"trace": TRACE}),
             http.get(reverse("tracing:application_traces", args=[application.pk]), {"trace": TRACE})]
    *statuses, tags_shown = EXPECTED[persona]
    assert [p.status_code for p in pages] == statuses
    for page in pages:
        assert (SECRET_TAG in page.content.decode()) is tags_shown, (persona, page.request["PATH_INFO"])
    if persona != "anonymous":
        assert 'data-testid="tab-traces"' in http.get(topic.get_absolute_url()).content.decode()
        assert 'data-testid="trace-details-hidden"' in pages[0].content.decode() or tags_shown
    assert http.get(reverse("tracing:event_trace", args=["never-seen"])).status_code == (
        302 if persona == "anonymous" else 404)
