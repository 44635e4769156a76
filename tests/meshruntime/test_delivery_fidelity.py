"""Events arrive as they were published (issue 13, items 3-5), end to end on a real runtime.

The ``cloudevents`` SDK's v1 API publishes (``to_structured``, ``to_binary``; a batch is an array
of its structured events) and receives: every webhook reads what it gets with ``from_http``, as a
subscriber following the CloudEvents HTTP binding would, and answers 400 when it cannot (which
dead-letters the event). Each event goes to a binary and a structured subscription of its topic,
and a routing rule copies it to a topic with a binary subscription of its own.

- numbers beyond 64-bit integers and beyond a double (in range and in precision) keep every digit,
  whichever mode publishes and delivers them, and a topic's schema sees the exact number;
- JSON data arrives byte for byte: a binary push's body is what the producer sent, and so is the
  ``data`` member of a structured push;
- an event whose ``datacontenttype`` is a CloudEvents format (Apache EventMesh's Java SDK sends
  ``application/cloudevents+json`` on every event) reaches a binary subscription in structured
  mode, which such a receiver reads correctly.
"""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
import pytest
from binding import receiving, sdk_request, send_raw
from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent as SdkEvent
from factories import ORDER_SCHEMA, access_rule, application, key_for, make_config, routing_rule, subscription, topic
from runtime_harness import running_runtime

ASYNC = "TEST-TOPIC-HTTP-ASYNC"  # the topic of the EventMesh fixture cloudevent-publish-104
RATIO_SCHEMA = {"type": "object", "required": ["ratio"],
                "properties": {"ratio": {"type": "number", "exclusiveMaximum": 1}}}

# Beyond 64 bits and beyond a double's precision, with a producer's spacing and a trailing zero;
# then beyond a double's range, both ways: what JSON may hold and orjson (64-bit integers,
# doubles) cannot, so that it refused the second and rounded the first.
NUMBERS = (b'{"order_id": "o-1", "amount": 123456789012345678901234567890, "debt": -98765432109876543210,'
           b' "rate": 0.1000000000000000000000001,  "fee": 1.50}')
RANGE = b'{"order_id": "o-2", "amount": 1.5E+400, "tiny": -1e-400}'
# issue 13, item 4, as given: two spaces, a trailing zero, an escaped and a literal u-umlaut
SPACED = '{"order_id": "c9",  "amount": 1.50, "note": "\\u00fc ü"}'.encode()


def mesh_doc(url: str) -> dict:
    """orders.created (order_id, a numeric amount): binary sub-1, structured sub-2; route-1 copies
    it to audit.orders, binary sub-3; orders.shipped (ratio < 1) structured sub-5; the EventMesh
    demo topic, binary sub-4."""
    hooks = f"{url}/events"
    return make_config(
        topics=["audit.orders", topic("orders.created", schema=ORDER_SCHEMA),
                topic("orders.shipped", schema=RATIO_SCHEMA), topic(ASYNC)],
        applications=[application("billing"), application("shipping", team="logistics"),
                      application("auditor", team="compliance"), application("eventmesh-demo")],
        access_rules=[access_rule("rule-1", ["billing"], "orders.*", ["publish"]),
                      access_rule("rule-2", ["eventmesh-demo"], ASYNC, ["publish"])],
        routing_rules=[routing_rule("route-1", "orders.created", ["audit.orders"])],
        subscriptions=[
            subscription("sub-1", "orders.created", "shipping", delivery={"url": hooks, "mode": "binary"}),
            subscription("sub-2", "orders.created", "shipping", delivery={"url": hooks, "mode": "structured"}),
            subscription("sub-3", "audit.orders", "auditor", delivery={"url": hooks, "mode": "binary"}),
            subscription("sub-4", ASYNC, "shipping", delivery={"url": hooks, "mode": "binary"}),
            subscription("sub-5", "orders.shipped", "shipping", delivery={"url": hooks, "mode": "structured"}),
        ],
    )


@pytest.fixture
async def mesh(redis_url, key_prefix, redis_client):
    async with receiving() as receiver, running_runtime(redis_url, key_prefix, doc=mesh_doc(receiver.url)) as h:
        await h.runtime.delivery.reconciled()
        yield h, receiver


def sdk_event(event_id: str, data=None, **attributes) -> SdkEvent:
    return SdkEvent({"id": event_id, "type": "com.example.order.created", "source": "/billing", **attributes}, data)


def structured(event_id: str, data_text: bytes, **attributes) -> tuple[dict[str, str], bytes]:
    """The SDK's structured event with ``data_text`` as its data member: its ``json.dumps`` cannot
    write a decimal of 25 digits (nor 1.50), so it writes a placeholder that the text replaces."""
    headers, body = to_structured(sdk_event(event_id, "@DATA@", datacontenttype="application/json", **attributes))
    assert body.count(b'"@DATA@"') == 1
    return headers, body.replace(b'"@DATA@"', data_text)


def binary(event_id: str, data_text: bytes) -> tuple[dict[str, str], bytes]:
    """The SDK's binary event whose body is ``data_text``, as given."""
    return to_binary(sdk_event(event_id, data_text, datacontenttype="application/json"),
                     data_marshaller=lambda data: data)


async def publish(h, mode: str, event_id: str, data_text: bytes, topic_name: str = "orders.created") -> str:
    """Publish ``data_text`` as the data of one event in ``mode``; the id of the stored event."""
    auth = {"Authorization": f"Bearer {key_for('billing')}"}
    if mode == "eventmesh":  # EventMesh's POST /eventmesh/publish/{topic}: the body is the data
        response = await h.client.post(f"/eventmesh/publish/{topic_name}", data=data_text,
                                       headers={**auth, "Content-Type": "application/json"})
        assert response.status == 200 and (await response.json())["retCode"] == 0, await response.text()
        return exact(h.stored_raw(topic_name)[-1])["id"]
    if mode == "batch":
        parts = [structured(f"{event_id}-before", b'{"order_id": "o-0"}')[1], structured(event_id, data_text)[1]]
        headers, body = {"Content-Type": "application/cloudevents-batch+json"}, b"[" + b", ".join(parts) + b"]"
    else:
        headers, body = structured(event_id, data_text) if mode == "structured" else binary(event_id, data_text)
    response = await h.client.post(f"/v1/topics/{topic_name}/events", data=body, headers={**auth, **headers})
    assert response.status == 202, await response.text()
    return event_id


def exact(text: bytes):
    return json.loads(text, parse_float=Decimal)


# -- item 3: numbers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["structured", "binary", "batch", "eventmesh"])
async def test_numbers_beyond_64_bits_and_doubles_arrive_with_every_digit(mesh, mode):
    h, receiver = mesh
    for n, data in enumerate((NUMBERS, RANGE)):
        event_id = await publish(h, mode, f"big-{n}", data)
        assert any(raw.endswith(b'"data":' + data + b"}") for raw in h.stored_raw("orders.created"))
        await receiver.wait_for(lambda r, event_id=event_id: r.errors or
                                sum(e["id"] == event_id for e in r.events) == 3)
        assert receiver.errors == []

        event, headers, body = receiver.delivery("sub-1", event_id)  # binary: the body is the data
        assert body == data and headers["Content-Type"] == "application/json"
        assert event.data["order_id"] == f"o-{n + 1}"

        event, headers, body = receiver.delivery("sub-2", event_id)  # structured: the data member is
        assert headers["Content-Type"] == "application/cloudevents+json"
        assert b'"data":' + data + b"}" in body and exact(body)["data"] == exact(data)

        _event, _headers, body = receiver.delivery("sub-3", event_id)  # the routed copy, binary
        assert body == data
    # the SDK reads integers exactly
    assert receiver.delivery("sub-1", event_id_of(receiver, "o-1"))[0].data["amount"] == 123456789012345678901234567890
    assert receiver.delivery("sub-2", event_id_of(receiver, "o-1"))[0].data["debt"] == -98765432109876543210


def event_id_of(receiver, order_id: str) -> str:
    return next(e["id"] for e in receiver.events if e.data["order_id"] == order_id)


async def test_a_schema_is_checked_against_the_exact_number(mesh):
    """exclusiveMaximum 1: a double reads 0.99999999999999999999 as 1.0 and 1.00000000000000000001
    as 1.0, so it refused the first and let the second through."""
    h, receiver = mesh
    below = await publish(h, "structured", "ratio-1", b'{"ratio": 0.99999999999999999999}', "orders.shipped")
    auth = {"Authorization": f"Bearer {key_for('billing')}"}
    headers, body = structured("ratio-2", b'{"ratio": 1.00000000000000000001}')
    response = await h.client.post("/v1/topics/orders.shipped/events", data=body, headers={**auth, **headers})
    assert response.status == 400
    answer = await response.json()
    assert (answer["error"], answer["path"]) == ("schema_mismatch", "data.ratio")
    assert "1.00000000000000000001 is greater than or equal to the maximum of 1" in answer["message"]
    await receiver.wait_for(lambda r: r.errors or r.events)
    _event, _headers, body = receiver.delivery("sub-5", below)
    assert b'"data":{"ratio": 0.99999999999999999999}' in body
    assert [e["id"] for e in receiver.events] == ["ratio-1"]


# -- item 4: JSON data byte for byte -------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["binary", "structured", "batch", "eventmesh"])
async def test_json_data_arrives_byte_for_byte_in_both_delivery_modes(mesh, mode):
    h, receiver = mesh
    event_id = await publish(h, mode, "spaced-1", SPACED)
    await receiver.wait_for(lambda r: r.errors or sum(e["id"] == event_id for e in r.events) == 3)
    assert receiver.errors == []
    event, _headers, body = receiver.delivery("sub-1", event_id)
    assert body == SPACED and event.data == {"order_id": "c9", "amount": 1.5, "note": "ü ü"}
    _event, _headers, body = receiver.delivery("sub-2", event_id)
    assert b'"data":' + SPACED + b"}" in body
    _event, _headers, body = receiver.delivery("sub-3", event_id)
    assert body == SPACED


# -- item 5: data in a CloudEvents format ----------------------------------------------------------------

async def test_the_eventmesh_sdks_events_reach_a_binary_subscription_readably(mesh):
    """CloudEventProducer's events say datacontenttype application/cloudevents+json: as the
    Content-Type of a binary push, from_http took the data for a whole event and failed (400)."""
    h, receiver = mesh
    status, _headers, body = await send_raw(h.url, sdk_request("cloudevent-publish-104"))
    assert status == 200 and orjson.loads(body) == {"retCode": 0, "retMsg": "success"}
    await receiver.wait_for(lambda r: r.errors or r.events)
    assert receiver.errors == []
    event, headers, body = receiver.delivery("sub-4", "5a4d2e2c-0f43-4d0b-9a7e-3b1f2c6d8e90")
    assert headers["Content-Type"] == "application/cloudevents+json" and "ce-id" not in headers
    assert (event["subject"], event["datacontenttype"], event["ttl"]) == (ASYNC, "application/cloudevents+json", "4000")
    assert event.data == {"content": "testAsyncMessage"}
    assert b'"data":{"content":"testAsyncMessage"}' in body


async def test_a_cloudevents_format_datacontenttype_is_delivered_structured_to_binary_subscriptions(mesh):
    h, receiver = mesh
    headers, body = structured("fmt-1", b'{"order_id": "o-5"}')
    headers["content-type"] = "application/cloudevents+json; charset=utf-8"
    body = body.replace(b'"datacontenttype": "application/json"', b'"datacontenttype": "application/cloudevents+json"')
    response = await h.client.post("/v1/topics/orders.created/events", data=body,
                                   headers={"Authorization": f"Bearer {key_for('billing')}", **headers})
    assert response.status == 202, await response.text()
    await receiver.wait_for(lambda r: r.errors or len(r.events) == 3)
    assert receiver.errors == []
    for sub in ("sub-1", "sub-2", "sub-3"):
        event, headers, _body = receiver.delivery(sub, "fmt-1")
        assert headers["Content-Type"] == "application/cloudevents+json"
        assert event["datacontenttype"] == "application/cloudevents+json" and event.data == {"order_id": "o-5"}
    # binary subscriptions still get other events in binary mode
    await publish(h, "structured", "plain-1", b'{"order_id": "o-6"}')
    await receiver.wait_for(lambda r: r.errors or len(r.events) == 6)
    _event, headers, _body = receiver.delivery("sub-1", "plain-1")
    assert headers["Content-Type"] == "application/json" and headers["ce-id"] == "plain-1"
