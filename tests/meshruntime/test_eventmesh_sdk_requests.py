"""Apache EventMesh's Java SDK against a real runtime, byte for byte.

The requests are the fixtures in ``fixtures/eventmesh/`` (derived from the SDK's source; the
README there says where every byte comes from), sent unchanged over a TCP socket. What they
publish is delivered to webhooks that read it with the ``cloudevents`` SDK's v1 ``from_http``,
as a subscriber following the CloudEvents HTTP binding would. Request–reply (code 101) is answered
by a topic's responder subscription, through Redis, also when another runtime delivers it.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlencode

import orjson
import pytest
from aiohttp import web
from binding import receiving, sdk_request, send_raw
from factories import access_rule, application, key_for, make_config, subscription, topic
from runtime_harness import running_runtime

from meshruntime.app import Runtime, Settings
from tests.portal_support.waiting import until

APP = "eventmesh-demo"  # the fixtures' passwd is this application's key
ASYNC, SYNC, SYNC_DEMO = "TEST-TOPIC-HTTP-ASYNC", "TEST-TOPIC-HTTP-SYNC", "EventMesh.SyncRequestInstance"
REPLY_KEYS = {"topic", "body", "properties"}  # SendMessageResponseBody.ReplyMessage, what request() parses


def eventmesh_doc(receiver_url: str, *, responder_state: str = "active", version: int = 1) -> dict:
    """The EventMesh demo topics; ``eventmesh-demo`` publishes, ``demo-consumer`` subscribes:
    sub-1 structured and sub-3 binary to /events, sub-2 the responder of TEST-TOPIC-HTTP-SYNC
    (structured: CloudEventProducer's events say ``datacontenttype: application/cloudevents+json``,
    which binary mode would make the Content-Type: issue 13, item 5)."""
    base = receiver_url.rstrip("/")
    return make_config(
        version=version,
        topics=[topic(ASYNC), topic(SYNC), topic(SYNC_DEMO), "audit.orders", "orders.created", "orders.shipped"],
        applications=[application(APP, team="payments"), application("demo-consumer", team="logistics"),
                      application("billing"), application("shipping", team="logistics"), application("auditor")],
        access_rules=[access_rule("rule-1", [APP], ASYNC, ["publish"]), access_rule("rule-2", [APP], SYNC, ["publish"]),
                      access_rule("rule-3", [APP], "EventMesh.*", ["publish"])],
        routing_rules=[],
        subscriptions=[
            subscription("sub-1", ASYNC, "demo-consumer", delivery={"url": f"{base}/events", "mode": "structured"}),
            subscription("sub-2", SYNC, "demo-consumer", state=responder_state, responder=True,
                         delivery={"url": f"{base}/responder", "mode": "structured", "backoff_base_ms": 50}),
            subscription("sub-3", SYNC_DEMO, "demo-consumer", delivery={"url": f"{base}/events", "mode": "binary"}),
        ],
    )


@pytest.fixture
async def mesh(redis_url, key_prefix, redis_client):
    """A gateway runtime with the EventMesh demo topics, and the receiver it delivers to."""
    async with receiving() as receiver, running_runtime(redis_url, key_prefix, doc=eventmesh_doc(receiver.url)) as h:
        await h.runtime.delivery.reconciled()
        yield h, receiver


async def eventmesh_answer(h, name: str) -> dict:
    status, headers, body = await send_raw(h.url, sdk_request(name))
    assert status == 200 and headers["content-type"].startswith("application/json"), body
    return orjson.loads(body)


IDENTITY = {"env": "env", "idc": "idc", "ip": "10.0.0.7", "pid": "4242", "sys": "1234", "username": "eventmesh",
            "producergroup": "EventMeshTest-producerGroup"}


# -- publishing --------------------------------------------------------------------------------------

async def test_the_sdks_cloudevent_publish_arrives_as_published(mesh):
    h, receiver = mesh
    assert await eventmesh_answer(h, "cloudevent-publish-104") == {"retCode": 0, "retMsg": "success"}
    await receiver.wait_for(lambda r: len(r.events) == 1)
    event = receiver.events[0]
    headers, _ = receiver.raw[0]
    assert headers["Content-Type"] == "application/cloudevents+json"  # sub-1 is structured
    assert event["id"] == "5a4d2e2c-0f43-4d0b-9a7e-3b1f2c6d8e90"
    assert (event["source"], event["type"], event["subject"], event["datacontenttype"]) == \
        ("/", "cloudevents", ASYNC, "application/cloudevents+json")
    assert event.data == {"content": "testAsyncMessage"}
    attributes = event.get_attributes()
    # what CloudEventProducer.enhanceCloudEvent added, and the identity of the request
    assert {k: attributes[k] for k in ("ttl", "protocoldesc", "protocolversion", "language", "bizseqno",
                                       "uniqueid")} == \
        {"ttl": "4000", "protocoldesc": "V1", "protocolversion": "1.0", "language": "JAVA",
         "bizseqno": "483920174650283719465028371946", "uniqueid": "650283719465028371946502837194"}
    assert {k: attributes[k] for k in IDENTITY} == IDENTITY
    assert "passwd" not in attributes and "code" not in attributes  # the key is never stored nor sent on
    assert receiver.errors == []


async def test_the_sdks_eventmeshmessage_publish_arrives_as_a_cloudevent(mesh):
    h, receiver = mesh
    # sub-1 delivers TEST-TOPIC-HTTP-ASYNC in structured mode
    assert await eventmesh_answer(h, "eventmeshmessage-publish-104") == {"retCode": 0, "retMsg": "success"}
    await receiver.wait_for(lambda r: len(r.events) == 1)
    event = receiver.events[0]
    assert (event["id"], event["source"], event["type"], event["subject"]) == \
        ("720194650283719465028371946502", "/", "eventmeshmessage", ASYNC)
    assert event["datacontenttype"] == "application/json" and event.data == {"content": "testAsyncMessage"}
    attributes = event.get_attributes()
    assert (attributes["uniqueid"], attributes["ttl"], attributes["bizseqno"]) == \
        ("837194650283719465028371946503", "4000", "720194650283719465028371946502")
    assert {k: attributes[k] for k in IDENTITY} == IDENTITY


async def test_the_batch_102_arrives_event_by_event_in_both_modes(mesh):
    h, receiver = mesh
    assert await eventmesh_answer(h, "eventmeshmessage-batch-102") == {"retCode": 0, "retMsg": "success"}
    await receiver.wait_for(lambda r: len(r.events) == 3)
    first, second = receiver.with_id("1" * 30), receiver.with_id("2" * 30)
    assert first["subject"] == second["subject"] == ASYNC
    assert first.data == {"content": "testAsyncMessage"} and first["datacontenttype"] == "application/json"
    assert second.data == "testBatchMessage 2" and second["datacontenttype"] == "text/plain; charset=utf-8"
    assert second["tag"] == "red" and "tag" not in first.get_attributes()
    assert first["batchid"] == second["batchid"] == "batch-0001"
    third = receiver.with_id("3" * 30)  # sub-3: binary mode
    headers, body = receiver.raw[[e["id"] for e in receiver.events].index("3" * 30)]
    assert headers["ce-id"] == "3" * 30 and headers["Content-Type"] == "application/json" and body == b"[1,2,3]"
    assert third["subject"] == SYNC_DEMO and third.data == [1, 2, 3]
    assert "ttl" not in third.get_attributes() and "tag" not in third.get_attributes()


# -- request-reply -----------------------------------------------------------------------------------

def reply_message(answer: dict) -> dict:
    """``retMsg`` read as the Java SDK's request() reads it: JSON of ReplyMessage, strings only."""
    assert answer["retCode"] == 0, answer
    message = orjson.loads(answer["retMsg"])
    assert set(message) == REPLY_KEYS and isinstance(message["body"], str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in message["properties"].items())
    return message


@pytest.mark.parametrize(("fixture", "event_id"), [
    ("eventmeshmessage-request-101", "946502837194650283719465028374"),
    ("cloudevent-request-101", "0c9e7a55-6b1d-4f0e-8c2a-71d4e5f6a7b8"),
])
async def test_a_request_is_answered_with_its_responders_reply(mesh, fixture, event_id):
    h, receiver = mesh
    message = reply_message(await eventmesh_answer(h, fixture))
    assert message["topic"] == SYNC
    assert orjson.loads(message["body"]) == {"pong": event_id, "topic": SYNC}  # what /responder answered
    assert message["properties"] == {"id": event_id, "subject": SYNC, "meshsubscription": "sub-2",
                                     "meshstatus": "200", "datacontenttype": "application/json; charset=utf-8"}
    # the responder read the request with the SDK: it carries the reply token and the deadline
    request = receiver.with_id(event_id)
    assert request["meshreplyto"] and request["meshreplyby"].endswith("Z")
    [stored] = [e for e in h.stored(SYNC) if e["id"] == event_id]  # a request is an event like any other
    assert stored["meshreplyto"] == request["meshreplyto"]


async def test_the_examples_request_without_ttl_is_refused_as_eventmesh_refuses_it(mesh):
    h, receiver = mesh
    answer = await eventmesh_answer(h, "eventmeshmessage-request-101-no-ttl")
    assert answer["retCode"] == 7 and "code 101 (request-reply) needs ttl" in answer["retMsg"]
    assert h.stored(SYNC_DEMO) == []


def request_101(topic_name: str, ttl: str, content: str = "ping", biz: str = "7" * 30) -> bytes:
    """An eventmeshmessage request as EventMeshMessageProducer builds it, with this ttl."""
    form = urlencode({"producergroup": "p", "topic": topic_name, "content": content, "ttl": ttl, "bizseqno": biz,
                      "uniqueid": "1" * 30})
    head = (f"POST / HTTP/1.1\r\ncode: 101\r\nprotocoltype: eventmeshmessage\r\nprotocolversion: 1.0\r\n"
            f"passwd: {key_for(APP)}\r\nContent-Type: application/x-www-form-urlencoded; charset=UTF-8\r\n"
            f"Content-Length: {len(form)}\r\nHost: x\r\n\r\n")
    return head.encode() + form.encode()


async def test_a_topic_without_a_responder_refuses_requests_before_storing(mesh):
    h, _ = mesh
    status, _, body = await send_raw(h.url, request_101(SYNC_DEMO, "1000"))
    answer = orjson.loads(body)
    assert answer["retCode"] == 3 and "none of its subscriptions is its responder" in answer["retMsg"]
    assert h.stored(SYNC_DEMO) == []


async def test_a_paused_responder_refuses_requests_before_storing(redis_url, key_prefix, redis_client):
    async with receiving() as receiver, \
            running_runtime(redis_url, key_prefix, doc=eventmesh_doc(receiver.url, responder_state="paused")) as h:
        _, _, body = await send_raw(h.url, request_101(SYNC, "1000"))
        answer = orjson.loads(body)
        assert answer["retCode"] == 3 and "its responder sub-2 is paused" in answer["retMsg"]
        assert h.stored(SYNC) == []


async def test_no_reply_within_the_ttl_answers_eventmeshs_waiting_error(redis_url, key_prefix, redis_client):
    async def fail(event):
        return 503, {"busy": True}  # retried, never a reply

    async with receiving(fail) as receiver, \
            running_runtime(redis_url, key_prefix, doc=eventmesh_doc(receiver.url)) as h:
        await h.runtime.delivery.reconciled()
        started = asyncio.get_running_loop().time()
        _, _, body = await send_raw(h.url, request_101(SYNC, "300"))
        waited = asyncio.get_running_loop().time() - started
        answer = orjson.loads(body)
        assert answer["retCode"] == 4
        assert answer["retMsg"].startswith("eventMesh waiting rr msg err, no reply to event '777") \
            and "within 300 ms" in answer["retMsg"]
        assert 0.3 <= waited < 2.0
        assert [e["id"] for e in h.stored(SYNC)] == ["7" * 30]  # stored, and still being delivered
        await receiver.wait_for(lambda r: len(r.events) >= 1)


async def test_a_reply_after_the_deadline_is_dropped_and_counted(redis_url, key_prefix, redis_client):
    async def late(event):
        await asyncio.sleep(0.5)  # the responder is slow on purpose: longer than the request's ttl
        return None

    async with receiving(late) as receiver, \
            running_runtime(redis_url, key_prefix, doc=eventmesh_doc(receiver.url)) as h:
        await h.runtime.delivery.reconciled()
        _, _, body = await send_raw(h.url, request_101(SYNC, "200"))
        assert orjson.loads(body)["retCode"] == 4
        replies = h.runtime.delivery.replies
        await until(lambda: replies.dropped.get("after the deadline") == 1, "the late answer dropped")
        assert replies.posted == 0 and receiver.errors == []
        assert not [key for key in redis_client.scan_iter(match=f"{key_prefix}reply:*")]  # nothing left behind


async def test_an_answer_that_is_not_text_is_refused_with_the_waiting_error(redis_url, key_prefix, redis_client):
    async def binary(event):
        return web.Response(body=b"\xff\xfe\x00", content_type="application/octet-stream")

    async with receiving(binary) as receiver, \
            running_runtime(redis_url, key_prefix, doc=eventmesh_doc(receiver.url)) as h:
        await h.runtime.delivery.reconciled()
        _, _, body = await send_raw(h.url, request_101(SYNC, "5000"))
    answer = orjson.loads(body)
    assert answer["retCode"] == 4 and "the responder's answer is not UTF-8 text" in answer["retMsg"]


async def test_a_reply_crosses_runtimes_when_another_one_delivers_in_its_child_process(redis_url, key_prefix,
                                                                                      redis_client):
    """The publisher's sidecar waits; the responder's sidecar, another runtime, delivers the request
    from its delivery child process, and the reply comes back through Redis."""
    async with receiving() as receiver:
        doc = eventmesh_doc(receiver.url)
        responder_side = Runtime(Settings(store_url=redis_url, application="demo-consumer", prefix=key_prefix,
                                          runtime_id="responder-sidecar", delivery_process=True))
        responder_side.apply_config(doc)
        await responder_side.start()
        try:
            async with running_runtime(redis_url, key_prefix, doc=doc, application=APP) as publisher_side:
                assert publisher_side.runtime.delivery.workers == {}  # it delivers nothing of demo-consumer's
                message = reply_message(await eventmesh_answer(publisher_side, "eventmeshmessage-request-101"))
                assert message["properties"]["meshsubscription"] == "sub-2"
                assert orjson.loads(message["body"])["pong"] == "946502837194650283719465028374"
            assert responder_side.delivery.pid is not None and responder_side.delivery.pid != os.getpid()
        finally:
            await responder_side.stop()
