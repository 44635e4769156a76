"""Publishing CloudEvents to a runtime, with the ``cloudevents`` SDK (2.x) as the client.

Every mode is checked end to end: the runtime answers 202 with the ids, and the topic's stream
holds exactly what was sent (attributes, extensions, data), plus the traceparent the runtime adds.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
import time

import orjson
import pytest
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from factories import default_prefix, key_for, make_config, routing_rule, topic
from runtime_harness import event, running_runtime, serving

from meshruntime.app import Settings

AUTH = {"Authorization": f"Bearer {key_for('billing')}"}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
async def h(redis_url, key_prefix, redis_client):
    async with running_runtime(redis_url, key_prefix) as harness:
        yield harness


def sdk_event(data, **attributes) -> SdkEvent:
    return SdkEvent({"type": "com.example.order.created", "source": "/billing/orders", "subject": "o-1",
                     "partitionkey": "customer-7", **attributes}, data)


def read_back(raw: bytes) -> SdkEvent:
    return JSONFormat().read(None, raw)


def assert_stored_exactly(stored: SdkEvent, sent: SdkEvent) -> None:
    attributes = dict(stored.get_attributes())
    assert attributes.pop("traceparent").startswith("00-")
    assert attributes == sent.get_attributes()
    assert stored.get_data() == sent.get_data()


async def post(h, topic_name: str, message: sdk_http.HTTPMessage):
    return await h.client.post(f"/v1/topics/{topic_name}/events", data=message.body,
                               headers={**AUTH, **message.headers})


async def test_structured_mode_is_accepted_and_stored_exactly(h):
    sent = sdk_event({"order_id": "o-1", "amount": 12.5, "lines": [{"sku": "a", "qty": 2}]},
                     datacontenttype="application/json")
    response = await post(h, "orders.created", sdk_http.to_structured_event(sent))
    assert response.status == 202
    assert await response.json() == {"topic": "orders.created", "accepted": 1, "ids": [sent.get_id()],
                                     "routed": {"route-1": 1}}
    [raw] = h.stored_raw("orders.created")
    assert_stored_exactly(read_back(raw), sent)


@pytest.mark.parametrize(
    ("topic_name", "data", "content_type"),
    [
        ("orders.created", {"order_id": "o-2", "amount": 3}, "application/json"),
        ("orders.shipped", "a line of text, with ümlauts", "text/plain; charset=utf-8"),
        ("orders.shipped", bytes(range(256)) * 4, "application/octet-stream"),
    ],
)
async def test_binary_mode_is_accepted_and_stored_exactly(h, topic_name, data, content_type):
    sent = sdk_event(data, datacontenttype=content_type, note='quotes " and 100% and é')
    message = sdk_http.to_binary_event(sent)
    response = await post(h, topic_name, message)
    assert response.status == 202, await response.text()
    [raw] = h.stored_raw(topic_name)
    stored = read_back(raw)
    assert_stored_exactly(stored, sent)
    # what a binary-mode subscriber would get back: the same body bytes
    assert sdk_http.to_binary_event(stored).body == message.body


async def test_batch_mode_is_accepted_and_stored_in_order(h):
    sent = [sdk_event({"order_id": f"o-{i}"}, datacontenttype="application/json", seq=i) for i in range(5)]
    sent.append(sdk_event(b"\x00raw", datacontenttype="application/octet-stream"))
    body = b"[" + b",".join(JSONFormat().write(e) for e in sent) + b"]"
    response = await h.client.post("/v1/topics/orders.shipped/events", data=body,
                                   headers={**AUTH, "Content-Type": "application/cloudevents-batch+json"})
    assert response.status == 202
    assert (await response.json())["ids"] == [e.get_id() for e in sent]
    stored = [read_back(raw) for raw in h.stored_raw("orders.shipped")]
    assert len(stored) == len(sent)
    for got, want in zip(stored, sent, strict=True):
        assert_stored_exactly(got, want)


async def test_an_empty_batch_is_accepted(h):
    response = await h.client.post("/v1/topics/orders.shipped/events", data=b"[]",
                                   headers={**AUTH, "Content-Type": "application/cloudevents-batch+json"})
    assert response.status == 202 and (await response.json())["ids"] == []
    assert h.stored("orders.shipped") == []


async def test_a_traceparent_is_kept_when_present_and_created_when_absent(h):
    await h.publish("orders.shipped", event(1, traceparent=TRACEPARENT))
    await h.publish("orders.shipped", event(2))
    kept, created = h.stored("orders.shipped")
    assert kept["traceparent"] == TRACEPARENT
    version, trace_id, span_id, flags = created["traceparent"].split("-")
    assert (version, flags, len(trace_id), len(span_id)) == ("00", "01", 32, 16)
    assert int(trace_id, 16) and int(span_id, 16)


async def test_routing_copies_carry_the_rule_and_go_to_every_target(redis_url, key_prefix, redis_client):
    doc = make_config(
        topics=["orders.created", "orders.shipped", "audit.orders", topic("audit.eu"), "audit.vip"],
        routing_rules=[
            routing_rule("route-1", "orders.*", ["audit.orders"], order=10),
            routing_rule("route-2", "orders.created", ["audit.eu", "audit.vip"], order=20,
                         filters=[{"exact": {"partitionkey": "vip"}}]),
        ],
    )
    async with running_runtime(redis_url, key_prefix, doc=doc) as h:
        response = await h.publish("orders.created", event(1, partitionkey="vip"))
        assert (await response.json())["routed"] == {"route-1": 1, "route-2": 2}
        await h.publish("orders.created", event(2, partitionkey="regular"))
        assert [e["id"] for e in h.stored("orders.created")] == ["evt-1", "evt-2"]
        audit = h.stored("audit.orders")
        assert [(e["id"], e["meshroute"]) for e in audit] == [("evt-1", "route-1"), ("evt-2", "route-1")]
        assert [(e["id"], e["meshroute"]) for e in h.stored("audit.eu")] == [("evt-1", "route-2")]
        assert [(e["id"], e["meshroute"]) for e in h.stored("audit.vip")] == [("evt-1", "route-2")]
        # the copy is the event, plus the rule: same data, same trace
        original = h.stored("orders.created")[0]
        assert {k: v for k, v in audit[0].items() if k != "meshroute"} == original
        assert "meshroute" not in original


async def test_the_journey_records_accepted_routed_and_stored(h):
    await h.publish("orders.created", event(1))
    steps = h.journey("evt-1")
    assert [s["step"] for s in steps] == ["accepted", "routed", "stored", "stored"]
    assert steps[0]["application"] == "billing" and steps[0]["runtime"] == "test-runtime"
    assert steps[0]["key_prefix"] == default_prefix("billing")  # which of billing's keys published
    assert steps[1] == {**steps[1], "rule": "route-1", "target": "audit.orders"}
    assert [s["topic"] for s in steps[2:]] == ["orders.created", "audit.orders"]
    assert 0 < h.redis.ttl(h.keys.journey("evt-1")) <= 86_400


async def test_journey_sampling_can_be_turned_off(redis_url, key_prefix, redis_client):
    async with running_runtime(redis_url, key_prefix, journey_sample_rate=0.0) as h:
        assert (await h.publish("orders.shipped", event(1))).status == 202
        assert h.stored("orders.shipped") and h.journey("evt-1") == []


async def test_a_deprecated_topic_still_accepts_but_warns(redis_url, key_prefix, redis_client):
    doc = make_config(topics=["orders.created", topic("orders.shipped", lifecycle="deprecated",
                                                      sunset="2027-01-31"), "audit.orders"])
    async with running_runtime(redis_url, key_prefix, doc=doc) as h:
        response = await h.publish("orders.shipped", event(1))
        assert response.status == 202
        assert (await response.json())["warnings"] == ["topic 'orders.shipped' is deprecated; its sunset is 2027-01-31"]


async def test_events_are_counted_in_metrics(h):
    await h.publish("orders.created", event(1))
    await h.publish_batch("orders.shipped", [event(2), event(3)])
    await h.publish("audit.orders", event(4))
    text = await (await h.client.get("/metrics")).text()
    assert 'meshruntime_events_published_total{application="billing",topic="orders.created"} 1.0' in text
    assert 'meshruntime_events_published_total{application="billing",topic="orders.shipped"} 2.0' in text
    assert 'meshruntime_routed_copies_total{rule="route-1",topic="orders.created"} 1.0' in text
    assert 'meshruntime_routed_copies_total{rule="route-1",topic="orders.shipped"} 2.0' in text
    assert 'meshruntime_publish_refusals_total{application="billing",reason="forbidden",topic="audit.orders"} 1.0' \
        in text
    # the bytes of the events as stored, without the routed copies
    size = sum(len(raw) for raw in h.stored_raw("orders.shipped") if b'"meshroute"' not in raw)
    assert f'meshruntime_published_bytes_total{{application="billing",topic="orders.shipped"}} {size:.1f}' in text
    assert "meshruntime_config_version 1.0" in text
    assert "meshruntime_append_latency_seconds_count" in text and "meshruntime_append_batch_size_bucket" in text


async def test_health_and_readiness(h):
    assert (await h.client.get("/healthz")).status == 200
    ready = await h.client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["config_version"] == 1
    info = await (await h.client.get("/v1/info")).json()
    assert info["mode"] == "gateway" and info["config_version"] == 1


async def test_a_runtime_is_named_and_versioned_the_way_its_heartbeats_name_it(h):
    host, pid, suffix = Settings(store_url="redis://127.0.0.1:1/0").runtime_id.rsplit("-", 2)
    assert host == socket.gethostname() and pid == str(os.getpid()) and len(suffix) == 4
    info = await (await h.client.get("/v1/info")).json()
    assert info["runtime"] == h.runtime.settings.runtime_id
    assert info["software_version"] == importlib.metadata.version("meshadmin")


async def test_readiness_fails_while_the_store_is_unreachable(key_prefix):
    from meshruntime.app import Runtime, Settings

    runtime = Runtime(Settings(store_url="redis://127.0.0.1:1/0", prefix=key_prefix))
    runtime.apply_config(make_config())

    async with serving(runtime) as client:
        response = await client.get("/readyz")
        assert response.status == 503 and (await response.json())["store"] == "unreachable"
        refused = await client.post("/v1/topics/orders.shipped/events", data=orjson.dumps(event(1)),
                                    headers={**AUTH, "Content-Type": "application/cloudevents+json"})
        assert refused.status == 503 and (await refused.json())["error"] == "store_unavailable"
    await runtime.stop()


async def test_an_unreachable_store_is_logged_once_a_second_not_once_a_request(key_prefix, caplog):
    from meshruntime.app import Runtime, Settings

    runtime = Runtime(Settings(store_url="redis://127.0.0.1:1/0", prefix=key_prefix))
    runtime.apply_config(make_config())
    started = time.monotonic()
    async with serving(runtime) as client:
        for i in range(20):
            refused = await client.post("/v1/topics/orders.shipped/events", data=orjson.dumps(event(i)),
                                        headers={**AUTH, "Content-Type": "application/cloudevents+json"})
            assert refused.status == 503
    seconds = time.monotonic() - started
    lines = [r.getMessage() for r in caplog.records if "did not take" in r.getMessage()]
    assert lines[0].startswith("the event store did not take 1 events (503 to their publishers)")
    assert len(lines) <= 1 + int(seconds)  # 20 requests, one line a second
    await runtime.stop()
