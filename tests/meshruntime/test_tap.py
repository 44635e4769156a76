"""The live tap: copies of events and refusals, only while watched, gathered into one message per channel."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest
import redis.asyncio as aioredis
from factories import key_for
from runtime_harness import event, running_runtime

from meshruntime import tapwire
from meshruntime.cloudevents import CloudEvent
from meshruntime.keys import KeySpace
from meshruntime.store.resp import RespPool
from meshruntime.tap import Tap, compact
from tests.portal_support.waiting import until


@pytest.fixture
async def h(redis_url, key_prefix, redis_client):
    async with running_runtime(redis_url, key_prefix, tap_data_limit=4096) as harness:
        yield harness


@pytest.fixture
async def listen(redis_url):
    """``await listen(*channels)`` is a subscribed PubSub; closed at the end."""
    client = aioredis.Redis.from_url(redis_url)
    opened = []

    async def subscribe(*channels: str):
        pubsub = client.pubsub()
        await pubsub.subscribe(*channels)
        opened.append(pubsub)
        return pubsub

    yield subscribe
    for pubsub in opened:
        await pubsub.aclose()
    await client.aclose()


async def next_message(pubsub, timeout: float = 5.0) -> tuple[str, list]:
    """The next message's channel and its copies (async: the runtime's loop must keep running)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
            if message is not None:
                return message["channel"].decode(), tapwire.decode(message["data"]).items()


async def next_raw(pubsub, timeout: float = 5.0) -> tapwire.TapMessage:
    """The next message, read as the portal reads it."""
    async with asyncio.timeout(timeout):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
            if message is not None:
                return tapwire.decode(message["data"])


async def nothing_more(pubsub) -> None:
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3) is None


async def test_copies_are_sent_only_for_watched_topics(h, listen):
    pubsub = await listen(h.keys.tap("orders.shipped"), h.keys.tap("orders.created"))
    await h.publish("orders.shipped", event(1))  # nobody watches: nothing sent
    h.redis.set(h.keys.tap_watch("orders.shipped"), "1", ex=30)
    await h.runtime.tap.refresh()
    await h.publish("orders.shipped", event(2, data={"order_id": "o-2", "note": "x" * 1000}))
    await h.publish("orders.created", event(3))  # watched topics only (orders.created is not)
    channel, [copy] = await next_message(pubsub)
    assert channel == h.keys.tap("orders.shipped")
    assert copy["event"]["id"] == "evt-2" and copy["outcome"] == "stored"
    assert copy["topic"] == "orders.shipped" and copy["application"] == "billing" and copy["stream_id"]
    assert copy["runtime"] == "test-runtime" and isinstance(copy["at"], int) and "rule" not in copy
    # the event as stored, data whole under the limit: the append's own JSON, not serialized again
    assert copy["event"] == h.stored("orders.shipped")[-1]
    assert copy["event"]["data"] == {"order_id": "o-2", "note": "x" * 1000}
    refused = await h.publish("orders.shipped", event(4), app="shipping")
    assert refused.status == 403
    _channel, [denied] = await next_message(pubsub)
    assert denied["attributes"]["id"] == "evt-4" and denied["outcome"] == "denied"
    assert denied["reason"] == "forbidden"
    await nothing_more(pubsub)


async def test_copies_sent_close_together_travel_in_one_message(h, listen):
    h.redis.set(h.keys.tap_watch("orders.shipped"), "1", ex=30)
    await h.runtime.tap.refresh()
    pubsub = await listen(h.keys.tap("orders.shipped"))
    response = await h.publish_batch("orders.shipped", [event(i) for i in range(5)])
    assert response.status == 202
    _channel, copies = await next_message(pubsub)
    assert [c["event"]["id"] for c in copies] == [f"evt-{i}" for i in range(5)]
    await nothing_more(pubsub)


async def test_an_event_beyond_the_limit_travels_cut_and_a_routed_copy_names_its_rule(h, listen):
    for topic in ("orders.shipped", "audit.orders"):
        h.redis.set(h.keys.tap_watch(topic), "1", ex=30)
    await h.runtime.tap.refresh()
    shipped, audit = await listen(h.keys.tap("orders.shipped")), await listen(h.keys.tap("audit.orders"))
    assert (await h.publish("orders.shipped", event(1, data={"note": "x" * 5000}))).status == 202  # limit 4096
    _channel, [cut] = await next_message(shipped)
    assert "event" not in cut and cut["attributes"]["id"] == "evt-1" and cut["stream_id"]
    assert cut["data_truncated"] is True and cut["data_encoding"] == "text" and len(cut["data"]) == 4096
    assert cut["data_size"] == len(b'{"note":""}') + 5000
    _channel, [routed] = await next_message(audit)  # route-1 copies orders.* to audit.orders
    assert routed["rule"] == "route-1" and routed["attributes"]["meshroute"] == "route-1"
    assert routed["topic"] == "audit.orders" and routed["data_truncated"] is True

    assert (await h.publish("orders.shipped", event(2))).status == 202
    _channel, [copy] = await next_message(shipped)
    assert copy["event"] == h.stored("orders.shipped")[-1] and "meshroute" not in copy["event"]
    _channel, [routed] = await next_message(audit)
    assert routed["rule"] == "route-1" and routed["event"] == h.stored("audit.orders")[-1]
    assert routed["event"]["meshroute"] == "route-1" and routed["topic"] == "audit.orders"


async def test_a_full_buffer_drops_copies_and_the_next_message_counts_them(h, listen):
    tap = h.runtime.tap
    h.redis.set(h.keys.tap_watch("orders.shipped"), "1", ex=30)
    await tap.refresh()
    pubsub = await listen(h.keys.tap("orders.shipped"))
    tap.max_buffer_bytes = 1  # one copy waits for Redis; the others are dropped until it is sent
    assert (await h.publish_batch("orders.shipped", [event(i) for i in range(10)])).status == 202
    message = await next_raw(pubsub)
    assert [c["event"]["id"] for c in message.items()] == ["evt-0"] and message.dropped == 9
    await until(lambda: tap.sent == 1, "the runtime to hear Redis took it")
    assert tap.dropped == 9
    assert b"meshruntime_tap_dropped_total 9.0" in h.runtime.metrics.render()
    tap.max_buffer_bytes = 1 << 20
    assert (await h.publish("orders.shipped", event(10))).status == 202
    message = await next_raw(pubsub)
    assert len(message) == 1 and message.dropped == 0  # counted once


@pytest.mark.parametrize("way", ["resp", "redis-py"])  # the runtime's raw connections, or a client's pipeline
async def test_copies_redis_did_not_take_are_counted_in_the_next_message(redis_url, key_prefix, listen, way):
    keys = KeySpace(key_prefix)
    nowhere = "redis://127.0.0.1:1"  # nothing listens there
    client = aioredis.Redis.from_url(redis_url if way == "resp" else nowhere)
    tap = Tap(client, prefix=key_prefix, runtime_id="r-1", topics=lambda: ["orders.created"], interval=0.05,
              resp=RespPool(nowhere) if way == "resp" else None)
    tap.watched = frozenset({"orders.created"})
    pubsub = await listen(keys.tap("orders.created"))
    stored = orjson.dumps(event(1))

    def offer(stream_id: str) -> None:
        tap.offer_stored("orders.created", CloudEvent.from_structured(stored), stored, application="billing",
                         stream_id=stream_id)

    for n in range(3):
        offer(f"{n}-0")
    await until(lambda: tap.dropped == 3, "the failed send to be counted")
    assert tap.sent == 0
    if way == "resp":  # Redis is back
        await tap.resp.close()
        tap.resp = RespPool(redis_url)
    else:
        await client.aclose()
        client = tap.client = aioredis.Redis.from_url(redis_url)
    try:
        message = await next_raw(pubsub)  # the count goes out by itself, with nothing else to send
        assert len(message) == 0 and message.dropped == 3
        offer("3-0")
        message = await next_raw(pubsub)
        assert len(message) == 1 and message.dropped == 0
    finally:
        await tap.stop()
        await client.aclose()


def test_data_beyond_the_limit_is_cut_and_marked_and_binary_data_is_base64() -> None:
    attributes = {"specversion": "1.0", "id": "e", "source": "/s", "type": "t"}
    big = CloudEvent(attributes, {"blob": "y" * 100})
    copy = compact(big, data_limit=50)
    assert copy["data_truncated"] is True and copy["data_encoding"] == "text"
    assert copy["data"] == '{"blob":"' + "y" * 41 and copy["data_size"] == len('{"blob":""}') + 100
    binary = CloudEvent({**attributes, "datacontenttype": "application/octet-stream"}, bytes(range(10)))
    copy = compact(binary, data_limit=4)
    assert copy["data_encoding"] == "base64" and base64.b64decode(copy["data"]) == bytes(range(4))
    assert copy["data_size"] == 10 and copy["data_truncated"] is True
    text = CloudEvent({**attributes, "datacontenttype": "text/plain"}, "héllo")
    assert compact(text) == {"attributes": text.attributes, "data": "héllo", "data_encoding": "text",
                             "data_size": 6}
    assert compact(CloudEvent(attributes)) == {"attributes": attributes, "data_size": 0}
    raw = CloudEvent(attributes, {"a": 1}, raw_json=b'{ "a" : 1 }')
    assert orjson.loads(orjson.dumps(compact(raw)))["data"] == {"a": 1}


async def test_refusals_go_to_each_watched_scope_and_nowhere_else(h, listen):
    keys = h.keys
    everything = await listen(keys.refusals)
    by_topic = await listen(keys.topic_refusals("audit.orders"))
    by_application = await listen(keys.application_refusals("shipping"))
    # nothing watched: nothing sent
    assert (await h.publish("audit.orders", event(1))).status == 403
    h.redis.set(keys.refusals_watch, "1", ex=30)
    h.redis.set(keys.topic_refusals_watch("audit.orders"), "1", ex=30)
    h.redis.set(keys.application_refusals_watch("shipping"), "1", ex=30)
    await h.runtime.tap.refresh()

    assert (await h.publish("audit.orders", event(2))).status == 403  # billing, denied by rule-3
    _channel, [record] = await next_message(everything)
    assert record == {"topic": "audit.orders", "application": "billing", "reason": "forbidden", "status": 403,
                      "message": "application 'billing' may not publish to 'audit.orders': denied by rule "
                                 "rule-3 (deny audit.*)",
                      "rule": "rule-3", "path": None, "event_id": "evt-2", "events": 1,
                      "runtime": "test-runtime", "at": record["at"]}
    assert (await next_message(by_topic))[1] == [record]
    await nothing_more(by_application)  # billing's refusal: not shipping's scope

    bad = [event(3), event(4, data={"order_id": 7})]
    assert (await h.publish_batch("orders.created", bad, app="billing")).status == 400
    _channel, [record] = await next_message(everything)
    assert (record["reason"], record["path"], record["event_id"], record["events"]) == \
        ("schema_mismatch", "data.order_id", "evt-4", 2)
    await nothing_more(by_topic)  # orders.created is not watched

    response = await h.client.post("/v1/topics/orders.created/events", data=orjson.dumps(event(5)), headers={
        "Authorization": f"Bearer {key_for('shipping')}", "Content-Type": "application/cloudevents+json"})
    assert response.status == 403  # no rule lets shipping publish: default deny
    _channel, [record] = await next_message(by_application)
    assert record["application"] == "shipping" and record["rule"] is None and record["event_id"] == "evt-5"
    assert (await next_message(everything))[1] == [record]


async def test_a_sidecar_reads_only_its_own_applications_refusal_watch(redis_url, key_prefix, redis_client):
    async with running_runtime(redis_url, key_prefix, application="billing") as sidecar:
        redis_client.set(sidecar.keys.application_refusals_watch("billing"), "1", ex=30)
        redis_client.set(sidecar.keys.application_refusals_watch("shipping"), "1", ex=30)
        await sidecar.runtime.tap.refresh()
        assert sidecar.runtime.tap.refusal_applications == {"billing"}
