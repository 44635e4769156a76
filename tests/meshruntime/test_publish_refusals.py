"""Every way a publish is refused: its status, a message naming the cause, and nothing stored.

Personas: billing may publish orders.* (rule-1); shipping has no publish rule; everyone is
denied audit.* (rule-3). orders.created has a schema requiring a string order_id.
"""

from __future__ import annotations

import orjson
import pytest
from factories import access_rule, app_key, key_for, make_config, make_key
from runtime_harness import event, running_runtime, serving

from meshruntime.publish import Limits

TOPICS = ("orders.created", "orders.shipped", "audit.orders")


@pytest.fixture
async def h(redis_url, key_prefix, redis_client):
    async with running_runtime(redis_url, key_prefix) as harness:
        yield harness
        # nothing refused ever reaches the store
        for name in TOPICS:
            assert harness.stored(name) == [], f"{name} holds refused events"


async def refused(response, status: int, error: str) -> dict:
    body = await response.json()
    assert response.status == status, body
    assert body["error"] == error and body["status"] == status and body["message"]
    return body


async def post(h, topic: str, body: bytes, **headers):
    return await h.client.post(f"/v1/topics/{topic}/events", data=body,
                               headers={"Content-Type": "application/cloudevents+json", **headers})


# -- 401 -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "an application key is required"),
        ("Bearer ", "an application key is required"),
        ("Bearer not-a-key", "not a Meshadmin application key"),
        (f"Bearer {make_key('Unknown1')}", "unknown key Unknown1"),
        # right prefix, wrong secret
        ("Bearer " + key_for("billing")[:-4] + "AAAA", "does not match"),
    ],
)
async def test_it_refuses_requests_without_a_valid_key(h, authorization, message):
    headers = {"Authorization": authorization} if authorization is not None else {}
    body = await refused(await post(h, "orders.created", orjson.dumps(event(1)), **headers), 401,
                         "unauthenticated")
    assert message in body["message"]
    assert key_for("billing")[12:] not in body["message"]  # never echoes a secret


async def test_it_refuses_an_expired_key(redis_url, key_prefix, redis_client):
    doc = make_config(applications=[
        {"name": "billing", "keys": [app_key("Expired1", expires_at="2020-01-01T00:00:00Z"),
                                     app_key("Current1", expires_at="2999-01-01T00:00:00Z")]},
        "shipping", "auditor"])
    async with running_runtime(redis_url, key_prefix, doc=doc) as h:
        response = await post(h, "orders.shipped", orjson.dumps(event(1)),
                              Authorization=f"Bearer {make_key('Expired1')}")
        assert "key Expired1 has expired" in (await refused(response, 401, "unauthenticated"))["message"]
        response = await post(h, "orders.shipped", orjson.dumps(event(2)),
                              Authorization=f"Bearer {make_key('Current1')}")
        assert response.status == 202
        assert [e["id"] for e in h.stored("orders.shipped")] == ["evt-2"]


async def test_a_sidecar_refuses_other_applications_keys(redis_url, key_prefix, redis_client):
    doc = make_config(access_rules=[access_rule("rule-9", "*", "orders.*", ["publish"])])
    async with running_runtime(redis_url, key_prefix, doc=doc, application="billing") as h:
        response = await h.publish("orders.shipped", event(1), app="shipping")
        body = await refused(response, 401, "unauthenticated")
        assert "belongs to application 'shipping'" in body["message"] and "sidecar of 'billing'" in body["message"]
        assert (await h.publish("orders.shipped", event(2), app="billing")).status == 202
        assert [e["id"] for e in h.stored("orders.shipped")] == ["evt-2"]
    async with running_runtime(redis_url, key_prefix + "gw:", doc=doc) as gateway:
        assert (await gateway.publish("orders.shipped", event(3), app="shipping")).status == 202


# -- 404 -------------------------------------------------------------------------------------------

async def test_it_refuses_an_unknown_topic(h):
    body = await refused(await h.publish("orders.cancelled", event(1)), 404, "unknown_topic")
    assert body["message"] == "unknown topic 'orders.cancelled'" and body["topic"] == "orders.cancelled"
    body = await refused(await h.publish("Orders!", event(1)), 404, "unknown_topic")
    assert "must be dot-separated segments of letters, digits" in body["message"]


# -- 403 -------------------------------------------------------------------------------------------

async def test_a_deny_rule_refuses_and_is_named(h):
    body = await refused(await h.publish("audit.orders", event(1)), 403, "forbidden")
    assert body["rule"] == "rule-3"
    assert body["message"] == ("application 'billing' may not publish to 'audit.orders': "
                               "denied by rule rule-3 (deny audit.*)")


async def test_without_an_allow_rule_the_default_deny_refuses(h):
    body = await refused(await h.publish("orders.created", event(1), app="shipping"), 403, "forbidden")
    assert body["rule"] is None and "no access rule allows it (default deny)" in body["message"]


# -- 400 -------------------------------------------------------------------------------------------

async def test_data_that_fails_the_topic_schema_is_refused_naming_the_path(h):
    response = await h.publish("orders.created", event(1, data={"order_id": 42}))
    body = await refused(response, 400, "schema_mismatch")
    assert body["path"] == "data.order_id" and body["pointer"] == "/order_id"
    assert body["event_id"] == "evt-1" and body["index"] == 0
    assert "at data.order_id: 42 is not of type 'string'" in body["message"]
    body = await refused(await h.publish("orders.created", event(2, data={"amount": 1})), 400, "schema_mismatch")
    assert body["path"] == "data" and "'order_id' is a required property" in body["message"]


async def test_data_that_is_not_json_cannot_match_a_schema(h):
    response = await h.client.post(
        "/v1/topics/orders.created/events", data=b"\x00\x01",
        headers={"Authorization": f"Bearer {key_for('billing')}", "Content-Type": "application/octet-stream",
                 "ce-specversion": "1.0", "ce-id": "b1", "ce-source": "/s", "ce-type": "t"})
    body = await refused(response, 400, "schema_mismatch")
    assert "requires JSON data matching its schema" in body["message"]


async def test_one_bad_event_refuses_the_whole_batch(h):
    events = [event(1), event(2), event(3, data={"order_id": None})]
    body = await refused(await h.publish_batch("orders.created", events), 400, "schema_mismatch")
    assert body["index"] == 2 and body["event_id"] == "evt-3"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (orjson.dumps({"specversion": "1.0", "id": "1", "source": "/s"}), "application/cloudevents+json",
         "required attribute 'type' is missing"),
        (b"{not json", "application/cloudevents+json", "not valid JSON"),
        (orjson.dumps([event(1), {"id": "x"}]), "application/cloudevents-batch+json", "event [1]"),
        (orjson.dumps(event(1)), "application/json", "not a CloudEvent"),
    ],
)
async def test_malformed_events_are_refused_with_the_reason(h, body, content_type, message):
    response = await post(h, "orders.created", body, Authorization=f"Bearer {key_for('billing')}",
                          **{"Content-Type": content_type})
    assert message in (await refused(response, 400, "invalid_event"))["message"]


# -- 413 -------------------------------------------------------------------------------------------

async def test_size_limits_answer_413(redis_url, key_prefix, redis_client):
    limits = Limits(max_event_bytes=600, max_request_bytes=4000, max_batch_events=3)
    async with running_runtime(redis_url, key_prefix, limits=limits) as h:
        body = await refused(await h.publish("orders.shipped", event(1, data={"x": "y" * 700})), 413, "too_large")
        assert "the limit is 600" in body["message"]
        # one event of a batch over the per-event limit
        batch = [event(2), event(3, data={"x": "y" * 700})]
        body = await refused(await h.publish_batch("orders.shipped", batch), 413, "too_large")
        assert body["event_id"] == "evt-3"
        body = await refused(await h.publish_batch("orders.shipped", [event(i) for i in range(4)]), 413,
                             "too_many")
        assert "at most 3 events" in body["message"]
        body = await refused(await h.publish_batch("orders.shipped", [event(i, data={"x": "y" * 400})
                                                                      for i in range(10)]), 413, "too_large")
        assert "the limit is 4000" in body["message"]
        assert h.stored("orders.shipped") == []


async def test_a_body_over_the_request_limit_is_refused_unread_but_a_bad_key_still_comes_first(
        redis_url, key_prefix):
    async with running_runtime(redis_url, key_prefix, limits=Limits(max_request_bytes=4000)) as h:
        big = orjson.dumps([event(i, data={"x": "y" * 400}) for i in range(10)])
        batch = {"Content-Type": "application/cloudevents-batch+json"}
        key = {"Authorization": f"Bearer {key_for('billing')}"}
        await refused(await post(h, "orders.shipped", big, Authorization="Bearer mk_nope_nope", **batch),
                      401, "unauthenticated")

        async def chunks():  # no Content-Length: the limit is found while the body comes in
            for start in range(0, len(big), 1000):
                yield big[start:start + 1000]

        body = await refused(await post(h, "orders.shipped", chunks(), **key, **batch), 413, "too_large")
        assert body["message"] == "the request body exceeds the limit; the limit is 4000 bytes"
        body = await refused(await post(h, "orders.shipped", big, **key, **batch), 413, "too_large")
        assert body["message"] == f"the request body is {len(big)} bytes; the limit is 4000 bytes"
        assert h.stored("orders.shipped") == []


# -- order of the checks ------------------------------------------------------------------------------

async def test_the_checks_run_in_order(h):
    # unauthenticated beats unknown topic
    await refused(await post(h, "nope.nope", orjson.dumps(event(1))), 401, "unauthenticated")
    # unknown topic beats a malformed schema
    await refused(await h.publish("nope.nope", event(1, data={})), 404, "unknown_topic")
    # forbidden beats a schema mismatch
    await refused(await h.publish("orders.created", event(1, data={}), app="shipping"), 403, "forbidden")


async def test_refusals_are_counted_and_recorded_in_the_journey(h):
    await h.publish("audit.orders", event(1))
    await h.publish("orders.created", event(2, data={}))
    await post(h, "orders.created", orjson.dumps(event(3)))
    text = await (await h.client.get("/metrics")).text()
    # by the topic and application where the runtime knows them; a bad key knows neither
    assert 'meshruntime_publish_refusals_total{application="billing",reason="forbidden",topic="audit.orders"} 1.0' \
        in text
    assert ('meshruntime_publish_refusals_total{application="billing",reason="schema_mismatch",'
            'topic="orders.created"} 1.0') in text
    assert 'meshruntime_publish_refusals_total{application="",reason="unauthenticated",topic=""} 1.0' in text
    await h.runtime.publisher.drain_background()
    [denied] = h.journey("evt-1")
    assert denied["step"] == "denied" and denied["reason"] == "forbidden" and denied["status"] == 403
    assert denied["rule"] == "rule-3"  # what decided, as the answer names it
    [mismatch] = h.journey("evt-2")
    assert mismatch["reason"] == "schema_mismatch" and mismatch["path"] == "data" and "rule" not in mismatch
    assert h.journey("evt-3") == []  # an unauthenticated body is not even read


async def test_an_unknown_topic_is_not_a_label_of_the_refusals(h):
    """Its name is the client's: as a label, every typo (or a hostile client) would be a new series."""
    for n in range(3):
        await refused(await h.publish(f"nope.n{n}", event(n)), 404, "unknown_topic")
    text = await (await h.client.get("/metrics")).text()
    assert 'meshruntime_publish_refusals_total{application="billing",reason="unknown_topic",topic=""} 3.0' in text
    assert "nope.n" not in text


async def test_a_runtime_without_configuration_is_not_ready(redis_url, key_prefix, redis_client):

    from meshruntime.app import Runtime, Settings

    runtime = Runtime(Settings(store_url=redis_url, prefix=key_prefix))
    async with serving(runtime) as client:
        body = await refused(await client.post("/v1/topics/orders.created/events", data=orjson.dumps(event(1)),
                                               headers={"Content-Type": "application/cloudevents+json"}),
                             503, "not_ready")
        assert body["message"] == "no configuration applied yet"
        assert (await client.get("/readyz")).status == 503
    await runtime.stop()
