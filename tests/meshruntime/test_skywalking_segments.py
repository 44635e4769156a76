"""Spans in SkyWalking's native protocol, checked against its published contract.

These tests check the contract, not a live OAP (which cannot run here): a stand-in collector (a
real HTTP server on ``/v3/segments``) parses every segment the runtimes send with protobuf's JSON
parser against the pinned ``Tracing.proto``, compiled at test time (``tests/contracts.py``), and
refuses unknown fields. They skip, saying why, when the contracts folder is absent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web
from factories import key_for, make_config, subscription
from runtime_harness import event, running_runtime

from meshruntime.__main__ import build_parser, settings_from_args
from meshruntime.demo.receiver import Receiver
from meshruntime.sw8 import ContextError, Sw8
from tests.contracts import parse_segment, segment_classes
from tests.portal_support.waiting import until

TOPIC = "orders.created"
PUBLISH_OP = f"POST /v1/topics/{TOPIC}/events"
QUIET = make_config(subscriptions=[])  # no deliveries: the publishes' segments only


@pytest.fixture(autouse=True)
def _contract():
    segment_classes()  # compiles the pinned protocol once; skips when it is absent


class Collector:
    """A stand-in for the OAP's HTTP receiver: every segment parsed strictly, then kept (as sent)."""

    def __init__(self, *, hold: asyncio.Event | None = None) -> None:
        self.segments: list[dict[str, Any]] = []
        self.requests = 0
        self.hold = hold  # while unset, requests are held unanswered (a collector that hangs)
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Collector:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v3/segments", self._collect)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # noqa: SLF001
        return self

    async def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        await self._runner.cleanup()

    async def _collect(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.hold is not None:
            await self.hold.wait()
        assert request.content_type == "application/json"
        batch = orjson.loads(await request.read())
        assert isinstance(batch, list), "the body must be a JSON array of SegmentObject"
        for item in batch:
            parse_segment(item)  # raises ParseError on anything the contract does not define
        async with self._arrived:
            self.segments.extend(batch)
            self._arrived.notify_all()
        return web.json_response({})

    async def wait_for(self, predicate, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: predicate(self.segments))

    def of(self, service: str) -> list[dict[str, Any]]:
        return [s for s in self.segments if s["service"] == service]


@pytest.fixture
async def collector():
    c = await Collector().start()
    yield c
    await c.stop()


def tags(span: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in span.get("tags", ())}


def doc_for(url: str, **delivery) -> dict[str, Any]:
    return make_config(subscriptions=[subscription("sub-1", TOPIC, "shipping", delivery={"url": url, **delivery})])


async def test_a_publish_and_its_delivery_through_two_runtimes_form_one_trace(redis_url, key_prefix, redis_client,
                                                                              collector):
    """billing's sidecar publishes, shipping's sidecar delivers from its child process: the
    segments link (entry of the publish → exit of the append → entry and exit of the attempt)
    and the subscriber's ``sw8`` continues the attempt's exit span."""
    receiver = await Receiver().start()
    doc = doc_for(receiver.url)
    try:
        async with (running_runtime(redis_url, key_prefix, doc=doc, application="shipping", runtime_id="rt-shipping",
                                    delivery_process=True, skywalking_url=collector.url) as _shipping,
                    running_runtime(redis_url, key_prefix, doc=doc, application="billing", runtime_id="rt-billing",
                                    skywalking_url=collector.url) as billing):
            response = await billing.publish(TOPIC, event(1))
            assert response.status == 202, await response.text()
            await receiver.wait_for(lambda r: r.ids() == ["evt-1"], timeout=30)
            await collector.wait_for(lambda s: any(x["service"] == "shipping" for x in s)
                                     and any(x["service"] == "billing" for x in s))
            journey = billing.journey("evt-1")
    finally:
        await receiver.stop()

    [published] = collector.of("billing")
    [delivered] = collector.of("shipping")
    entry, append = published["spans"]
    trace = published["traceId"]
    assert published["serviceInstance"] == "rt-billing" and delivered["serviceInstance"] == "rt-shipping"
    assert (entry["spanType"], entry["spanLayer"], entry["operationName"]) == ("Entry", "Http", PUBLISH_OP)
    assert tags(entry)["mq.topic"] == TOPIC and tags(entry)["mesh.application"] == "billing"
    assert (append["spanType"], append["parentSpanId"], append["spanLayer"]) == ("Exit", 0, "MQ")
    host, port = redis_url.split("//")[1].split("/")[0].rsplit(":", 1)
    assert append["peer"] == f"{host}:{port}"

    consume, push = delivered["spans"]
    assert delivered["traceId"] == trace
    assert consume["spanType"] == "Entry" and consume["refs"] == [{
        "refType": "CrossProcess", "traceId": trace, "parentTraceSegmentId": published["traceSegmentId"],
        "parentSpanId": 1, "parentService": "billing", "parentServiceInstance": "rt-billing",
        "parentEndpoint": PUBLISH_OP, "networkAddressUsedAtPeer": append["peer"]}]
    assert (push["spanType"], push["parentSpanId"], push["spanLayer"]) == ("Exit", 0, "Http")
    assert push["peer"] == f"127.0.0.1:{receiver.port}"
    assert tags(push)["http.status_code"] == "200" and tags(push)["mesh.subscription"] == "sub-1"

    headers = receiver.received[0].headers
    handed = Sw8.decode(headers["sw8"])
    assert (handed.trace_id, handed.segment_id, handed.span_id) == (trace, delivered["traceSegmentId"], 1)
    assert (handed.service, handed.instance, handed.peer) == ("shipping", "rt-shipping", push["peer"])
    assert handed.endpoint == consume["operationName"] == "Mesh/orders.created/Deliver/sub-1"
    # both contexts name one trace: without an incoming sw8 the trace id is the W3C one (in binary
    # mode the event's traceparent travels as ce-traceparent)
    traceparent = {name.lower(): value for name, value in headers.items()}["ce-traceparent"]
    assert traceparent.split("-")[1] == trace
    # the journey says which trace the event is in (how the portal finds it)
    assert next(s for s in journey if s["step"] == "accepted")["trace_id"] == trace


async def test_a_callers_sw8_is_the_parent_of_the_publish(redis_url, key_prefix, redis_client, collector):
    caller = Sw8("caller.trace.1", "caller-segment", 3, "checkout", "checkout-1", "POST /pay", "mesh:8700")
    async with running_runtime(redis_url, key_prefix, doc=QUIET, skywalking_url=collector.url) as h:
        response = await h.publish(TOPIC, event(1), headers={"sw8": caller.encode()})
        assert response.status == 202
        [stored] = h.stored(TOPIC)
    await collector.wait_for(lambda s: len(s) == 1)
    [published] = collector.segments
    assert published["traceId"] == "caller.trace.1"
    assert published["spans"][0]["refs"] == [caller.reference()]
    assert caller.reference()["parentService"] == "checkout"
    # the stored event names the append of this publish, in the caller's trace
    stored_context = Sw8.decode(stored["sw8"])
    assert (stored_context.trace_id, stored_context.segment_id, stored_context.span_id) == (
        "caller.trace.1", published["traceSegmentId"], 1)


async def test_a_malformed_sw8_starts_a_new_trace_and_never_refuses_the_publish(redis_url, key_prefix, redis_client,
                                                                                collector):
    async with running_runtime(redis_url, key_prefix, doc=QUIET, skywalking_url=collector.url) as h:
        response = await h.publish(TOPIC, event(1), headers={"sw8": "1-not base64-x-y"})
        assert response.status == 202
    await collector.wait_for(lambda s: len(s) == 1)
    entry = collector.segments[0]["spans"][0]
    assert "refs" not in entry
    assert tags(entry)["mesh.sw8_error"] == "sw8: expected 8 fields separated by '-', got 4"


async def test_each_attempt_is_a_segment_and_the_failed_one_is_an_error(redis_url, key_prefix, redis_client,
                                                                        collector):
    async def fail_first(received, request):
        return web.Response(status=503) if received.attempt == 1 else None

    receiver = await Receiver(respond=fail_first).start()
    try:
        doc = doc_for(receiver.url, backoff_base_ms=10, backoff_cap_ms=20)
        async with running_runtime(redis_url, key_prefix, doc=doc, skywalking_url=collector.url) as h:
            await h.runtime.delivery.reconciled()
            assert (await h.publish(TOPIC, event(1))).status == 202
            await receiver.wait_for(lambda r: r.ids() == ["evt-1"])
            await collector.wait_for(lambda s: len(s) == 3)
    finally:
        await receiver.stop()
    published, *attempts = sorted(collector.segments, key=lambda s: s["spans"][0]["operationName"] != PUBLISH_OP)
    assert [tags(a["spans"][1])["http.status_code"] for a in attempts] == ["503", "200"]
    assert [a["spans"][1]["isError"] for a in attempts] == [True, False]
    for attempt in attempts:  # both continue the publish's append
        assert attempt["spans"][0]["refs"][0]["parentTraceSegmentId"] == published["traceSegmentId"]
    handed = [Sw8.decode(r.headers["sw8"]).segment_id for r in receiver.received]
    assert handed == [a["traceSegmentId"] for a in attempts]


async def test_a_refused_publish_is_an_error_span_without_an_append(redis_url, key_prefix, redis_client, collector):
    async with running_runtime(redis_url, key_prefix, doc=QUIET, skywalking_url=collector.url) as h:
        assert (await h.publish("audit.orders", event(1))).status == 403
    await collector.wait_for(lambda s: len(s) == 1)
    [span] = collector.segments[0]["spans"]
    assert span["isError"] is True and tags(span)["mesh.refusal"] == "forbidden"
    assert tags(span)["http.status_code"] == "403"
    assert key_for("billing") not in orjson.dumps(collector.segments).decode()  # keys never leave in spans


async def test_an_eventmesh_publish_is_an_entry_span_too(redis_url, key_prefix, redis_client, collector):
    async with running_runtime(redis_url, key_prefix, doc=QUIET, skywalking_url=collector.url) as h:
        response = await h.client.post(f"/eventmesh/publish/{TOPIC}", data=orjson.dumps({"order_id": "o-1"}),
                                       headers={"Content-Type": "application/json", "passwd": key_for("billing")})
        assert (await response.json())["retCode"] == 0
        [stored] = h.stored(TOPIC)
    await collector.wait_for(lambda s: len(s) == 1)
    [published] = collector.segments
    entry, append = published["spans"]
    assert entry["operationName"] == f"POST /eventmesh/publish/{TOPIC}" and not entry["isError"]
    assert append["spanType"] == "Exit"
    assert Sw8.decode(stored["sw8"]).segment_id == published["traceSegmentId"]


async def test_publishing_never_waits_for_a_collector_that_hangs(redis_url, key_prefix, redis_client):
    """The collector takes the first batch and never answers: publishes carry on at once, and
    what does not fit the bounded queue is dropped and counted."""
    hung = await Collector(hold=asyncio.Event()).start()
    try:
        async with running_runtime(redis_url, key_prefix, doc=QUIET, skywalking_url=hung.url) as h:
            reporter = h.runtime.segments
            reporter.max_queue, reporter.batch_size = 20, 10
            assert (await h.publish(TOPIC, event(0))).status == 202
            await until(lambda: hung.requests > 0, "the sender to be stuck on the first batch")
            async with asyncio.timeout(10):  # were a publish to wait for the collector, this would time out
                for i in range(1, 61):
                    assert (await h.publish(TOPIC, event(i))).status == 202
            assert reporter.counts.values["dropped_queue_full"] == 60 - 20
            metrics = await (await h.client.get("/metrics")).text()
            assert 'meshruntime_trace_segments_total{outcome="dropped_queue_full"} 40.0' in metrics
    finally:
        await hung.stop()


async def test_a_collector_that_is_down_costs_dropped_segments_not_publishes(redis_url, key_prefix, redis_client):
    down = await Collector().start()
    url = down.url
    await down.stop()  # nothing listens there now
    async with running_runtime(redis_url, key_prefix, doc=QUIET, skywalking_url=url) as h:
        reporter = h.runtime.segments
        reporter.interval_s = 0.05
        for i in range(5):
            assert (await h.publish(TOPIC, event(i))).status == 202
        await until(lambda: reporter.counts.values["dropped_collector"] >= 5, "five segments dropped, unsent")
    assert reporter.counts.values["sent"] == 0


def test_the_sw8_header_round_trips_and_bad_values_are_named():
    context = Sw8("a.b.c", "seg-1", 2, "billing", "rt-1", "POST /v1/topics/x/events", "10.0.0.1:8080")
    assert Sw8.decode(context.encode()) == context
    # the field order and encodings of SkyWalking's format
    fields = context.encode().split("-")
    assert fields[0] == "1" and fields[3] == "2" and len(fields) == 8
    for value, message in [
        ("1-YQ==-YQ==-x-YQ==-YQ==-YQ==-YQ==", "parent span id must be a number"),
        ("2-YQ==-YQ==-1-YQ==-YQ==-YQ==-YQ==", "sample flag must be 0 or 1"),
        ("1-%%%-YQ==-1-YQ==-YQ==-YQ==-YQ==", "the trace id is not base64"),
        ("1--YQ==-1-YQ==-YQ==-YQ==-YQ==", "must not be empty"),
        ("1-YQ==", "expected 8 fields"),
    ]:
        with pytest.raises(ContextError, match=message):
            Sw8.decode(value)


def test_the_command_line_needs_a_url_for_the_chosen_trace_mode():
    args = ["--gateway", "--store-url", "redis://127.0.0.1:6379/0", "--config-file", "mesh.json"]
    with pytest.raises(SystemExit, match="--traces skywalking needs --skywalking-url"):
        settings_from_args(build_parser().parse_args([*args, "--traces", "skywalking"]))
    settings = settings_from_args(build_parser().parse_args([*args, "--skywalking-url", "http://oap:12800"]))
    assert settings.trace_mode == "skywalking"
    assert settings_from_args(build_parser().parse_args(args)).trace_mode == "none"

