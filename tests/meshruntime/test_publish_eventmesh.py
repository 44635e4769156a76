"""Apache EventMesh HTTP publish requests, sent as EventMesh's HTTP clients send them.

Replies are HTTP 200 with ``{"retCode", "retMsg"}``; 0 is success, and refusals carry
EventMesh's codes (22 access, 7 body, 8 size, 23 over limit, 2 bad request code).
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

import orjson
import pytest
from factories import key_for
from runtime_harness import event, running_runtime

from meshruntime.publish import Limits

# The identity headers an EventMesh client sends with every request.
IDENTITY = {"env": "prod", "idc": "FT", "ip": "10.0.0.7", "pid": "4242", "sys": "1234", "username": "billing"}


@pytest.fixture
async def h(redis_url, key_prefix, redis_client):
    async with running_runtime(redis_url, key_prefix, limits=Limits(max_batch_events=5)) as harness:
        yield harness


async def reply(response) -> dict:
    assert response.status == 200
    assert response.content_type == "application/json"
    return await response.json()


def cloudevent(i: int, topic: str = "orders.shipped", **extra) -> dict:
    return {"specversion": "1.0", "id": f"em-{i}", "source": "/eventmesh/client", "type": "order.shipped",
            "subject": topic, "datacontenttype": "application/json", "data": {"order_id": f"o-{i}"}, **extra}


def code_form(code: int, app: str = "billing", **fields) -> dict:
    """Headers and form body of the older request form (SendAsyncMessageProcessor and friends)."""
    headers = {"code": str(code), "language": "JAVA", "version": "V1", "protocoltype": "cloudevents",
               "protocolversion": "1.0", "protocoldesc": "http", **IDENTITY, "passwd": key_for(app),
               "Content-Type": "application/x-www-form-urlencoded"}
    return {"headers": headers, "data": urlencode({"producergroup": "billing-producers", **fields})}


# -- the path form ----------------------------------------------------------------------------------

async def test_the_path_form_wraps_any_json_body_as_a_cloudevent(h):
    body = {"order_id": "o-1", "lines": [1, 2]}
    response = await h.client.post("/eventmesh/publish/orders.shipped", data=orjson.dumps(body),
                                   headers={**IDENTITY, "producergroup": "billing-producers",
                                            "passwd": key_for("billing"), "Content-Type": "application/json"})
    assert await reply(response) == {"retCode": 0, "retMsg": "success"}
    [stored] = h.stored("orders.shipped")
    uuid.UUID(stored["id"])  # a fresh id
    assert stored["subject"] == "orders.shipped" and stored["type"] == "http_request"
    assert stored["source"].startswith("/eventmesh/") and stored["data"] == body
    assert stored["producergroup"] == "billing-producers" and stored["idc"] == "FT" and stored["pid"] == "4242"
    assert "passwd" not in stored and "token" not in stored  # secrets are never stored
    # routing and journeys apply as to any publish
    assert [e["meshroute"] for e in h.stored("audit.orders")] == ["route-1"]
    assert [s["step"] for s in h.journey(stored["id"])][0] == "accepted"


async def test_the_path_form_takes_a_bearer_key_and_source_and_type_headers(h):
    response = await h.client.post("/eventmesh/publish/orders.shipped", data=b'{"a": 1}',
                                   headers={"Authorization": f"Bearer {key_for('billing')}",
                                            "source": "/legacy/app", "type": "legacy.event"})
    assert (await reply(response))["retCode"] == 0
    [stored] = h.stored("orders.shipped")
    assert (stored["source"], stored["type"], stored["producergroup"]) == \
        ("/legacy/app", "legacy.event", "em-http-producer")


async def test_publish_batch_is_the_path_form_for_a_topic_named_batch_as_in_eventmesh(h):
    # EventMesh takes everything after /eventmesh/publish/ as the topic (HttpEventWrapper); there is
    # no batch route, so a JSON array of CloudEvents sent there is one event for the topic "batch"
    events = [cloudevent(1), cloudevent(2, topic="orders.created", data={"order_id": "o-2"})]
    response = await h.client.post("/eventmesh/publish/batch", data=orjson.dumps(events),
                                   headers={**IDENTITY, "passwd": key_for("billing")})
    body = await reply(response)
    assert body["retCode"] == 22 and "unknown topic 'batch'" in body["retMsg"]
    assert h.stored("orders.shipped") == [] and h.stored("orders.created") == []


# -- the code form ----------------------------------------------------------------------------------

async def test_a_single_send_by_request_code_104(h):
    request = code_form(104, content=orjson.dumps(cloudevent(1)).decode())
    body = await reply(await h.client.post("/eventmesh/publish", **request))
    assert body["retCode"] == 0 and body["retMsg"] == "success"
    [stored] = h.stored("orders.shipped")
    assert stored["id"] == "em-1" and stored["data"] == {"order_id": "o-1"}
    assert stored["producergroup"] == "billing-producers" and stored["env"] == "prod"
    assert stored["username"] == "billing" and "passwd" not in stored


async def test_the_code_form_is_accepted_on_the_root_path_and_as_json(h):
    request = code_form(104)
    request["headers"]["Content-Type"] = "application/json"
    request["data"] = orjson.dumps({"producergroup": "p", "content": cloudevent(1)})
    assert (await reply(await h.client.post("/", **request)))["retCode"] == 0
    assert [e["id"] for e in h.stored("orders.shipped")] == ["em-1"]


NUMBERS = b'{"order_id": "o-1", "amount": 123456789012345678901234567890, "rate": 0.1000000000000000000000001}'


@pytest.mark.parametrize("form", ["form", "json"])
async def test_a_cloudevents_content_keeps_its_data_as_written(h, form):
    """The event in ``content`` (a string of the form, or a JSON value of the JSON form) is stored with
    its data as written: orjson would make 1.2345678901234568e+29 and 0.1 of these numbers."""
    content = orjson.dumps(cloudevent(1, data="@DATA@")).replace(b'"@DATA@"', NUMBERS)
    request = code_form(104, content=content.decode())
    if form == "json":
        request["headers"]["Content-Type"] = "application/json"
        request["data"] = b'{"producergroup": "p", "content": ' + content + b"}"
    assert (await reply(await h.client.post("/eventmesh/publish", **request)))["retCode"] == 0
    [stored] = h.stored_raw("orders.shipped")
    assert stored.endswith(b',"data":' + NUMBERS + b"}")


def batch_form(entries: list[dict], app: str = "billing", **fields) -> dict:
    """EventMesh's batch (code 102): SendMessageBatchRequestBody's fields."""
    request = code_form(102, app)
    request["headers"]["protocoltype"] = "eventmeshmessage"
    form = {"batchId": "b-1", "size": str(len(entries)), "producerGroup": "billing-producers",
            "contents": orjson.dumps(entries).decode(), **fields}
    request["data"] = urlencode(form)
    return request


def entry(i: int, topic: str = "orders.shipped", **extra) -> dict:
    return {"bizSeqNo": f"{i:030d}", "topic": topic, "msg": orjson.dumps({"order_id": f"o-{i}"}).decode(),
            "tag": "", "ttl": "4000", **extra}


async def test_a_batch_by_request_code_102(h):
    entries = [entry(1), entry(2, msg="plain text"), entry(3, topic="orders.created", tag="eu")]
    body = await reply(await h.client.post("/eventmesh/publish", **batch_form(entries)))
    assert body == {"retCode": 0, "retMsg": "success"}
    first, second = h.stored("orders.shipped")
    assert (first["id"], first["type"], first["source"], first["subject"]) == \
        (f"{1:030d}", "eventmeshmessage", "/", "orders.shipped")
    assert first["datacontenttype"] == "application/json" and first["data"] == {"order_id": "o-1"}
    assert second["datacontenttype"] == "text/plain; charset=utf-8" and second["data"] == "plain text"
    assert (first["batchid"], first["producergroup"], first["ttl"], first["env"]) == \
        ("b-1", "billing-producers", "4000", "prod")
    assert "tag" not in first  # an empty tag is no tag
    [third] = h.stored("orders.created")
    assert third["tag"] == "eu" and third["bizseqno"] == f"{3:030d}"


async def test_a_102_of_cloudevents_is_not_eventmesh_and_is_refused(h):
    contents = orjson.dumps([cloudevent(1)]).decode()
    request = code_form(102, contents=contents, batchId="b-1", producerGroup="p", size="1")
    body = await reply(await h.client.post("/eventmesh/publish", **request))
    assert body["retCode"] == 6 and "contents[0]: an eventmeshmessage needs bizseqno" in body["retMsg"]
    assert h.stored("orders.shipped") == []


@pytest.mark.parametrize(("fields", "ret_code", "message"), [
    ({"size": "3"}, 7, "size is 3 but contents has 2 entries"),
    ({"size": ""}, 7, "size is 1 but contents has 2 entries"),  # EventMesh reads a missing size as 1
    ({"batchId": ""}, 7, "a batch (code 102) needs batchId"),
    ({"producerGroup": ""}, 7, "needs producerGroup"),
    ({"contents": "[]"}, 7, "contents must be a non-empty JSON array"),
    ({"contents": "{"}, 7, "contents is not valid JSON"),
])
async def test_a_batch_that_eventmesh_would_refuse_is_refused_with_its_code(h, fields, ret_code, message):
    body = await reply(await h.client.post("/eventmesh/publish", **batch_form([entry(1), entry(2)], **fields)))
    assert body["retCode"] == ret_code and message in body["retMsg"]
    assert h.stored("orders.shipped") == []


@pytest.mark.parametrize(("bad", "ret_code", "message"), [
    ({"bizSeqNo": ""}, 6, "contents[1]: an eventmeshmessage needs bizseqno"),
    ({"topic": None}, 6, "contents[1]: an eventmeshmessage needs topic"),
    ({"msg": None}, 7, "contents[1]: an eventmeshmessage needs msg"),
])
async def test_a_bad_batch_entry_is_named(h, bad, ret_code, message):
    body = await reply(await h.client.post("/eventmesh/publish", **batch_form([entry(1), entry(2, **bad)])))
    assert body["retCode"] == ret_code and message in body["retMsg"]
    assert h.stored("orders.shipped") == []


async def test_an_eventmeshmessage_by_request_code_104(h):
    request = code_form(104, topic="orders.shipped", content='{"order_id": "o-9"}', bizseqno="9" * 30,
                        uniqueid="8" * 30, ttl="4000")
    request["headers"]["protocoltype"] = "eventmeshmessage"
    assert await reply(await h.client.post("/", **request)) == {"retCode": 0, "retMsg": "success"}
    [stored] = h.stored("orders.shipped")
    assert (stored["id"], stored["type"], stored["uniqueid"], stored["ttl"]) == \
        ("9" * 30, "eventmeshmessage", "8" * 30, "4000")
    assert h.stored_raw("orders.shipped")[0].endswith(b'"data":{"order_id": "o-9"}}')  # its bytes, kept


async def test_a_batch_v2_by_request_code_107(h):
    msg = orjson.dumps(cloudevent(1, subject=None)).decode()
    request = code_form(107, msg=msg, topic="orders.shipped", bizseqno="123")
    assert (await reply(await h.client.post("/eventmesh/publish", **request)))["retCode"] == 0
    assert [e["id"] for e in h.stored("orders.shipped")] == ["em-1"]


# -- refusals in EventMesh's codes ---------------------------------------------------------------------

async def test_refusals_answer_eventmesh_codes_and_store_nothing(h):
    async def code_of(**request) -> tuple[int, str]:
        body = await reply(await h.client.post("/eventmesh/publish", **request))
        return body["retCode"], body["retMsg"]

    content = orjson.dumps(cloudevent(1)).decode()
    # access: a wrong key, an application without a publish rule, a deny rule, an unknown topic
    bad_key = code_form(104, content=content)
    bad_key["headers"]["passwd"] = "mk_nope"
    assert (await code_of(**bad_key))[0] == 22
    assert (await code_of(**code_form(104, app="shipping", content=content)))[0] == 22
    code, message = await code_of(**code_form(104, content=orjson.dumps(cloudevent(1, topic="audit.orders")).decode()))
    assert code == 22 and "rule-3" in message
    code, message = await code_of(**code_form(104, content=orjson.dumps(cloudevent(1, topic="no.such")).decode()))
    assert code == 22 and "unknown topic" in message
    # body: the topic's schema, a broken CloudEvent, a missing field
    code, message = await code_of(**code_form(
        104, content=orjson.dumps(cloudevent(1, topic="orders.created", data={"order_id": 5})).decode()))
    assert code == 7 and "data.order_id" in message
    assert (await code_of(**code_form(104, content='{"id": "x"}')))[0] == 7
    assert (await code_of(**code_form(104)))[0] == 7
    # over the limit of events in one request (5 here), counted across topics
    entries = [entry(i, topic="orders.created" if i % 2 else "orders.shipped") for i in range(6)]
    assert (await code_of(**batch_form(entries)))[0] == 23
    # not a publish, or no code at all
    assert (await code_of(**code_form(206, content=content)))[0] == 2
    no_code = code_form(104, content=content)
    del no_code["headers"]["code"]
    assert (await code_of(**no_code))[0] == 2
    other_protocol = code_form(104, content=content)
    other_protocol["headers"]["protocoltype"] = "eventmeshmessage"
    assert (await code_of(**other_protocol))[0] == 6
    for name in ("orders.shipped", "orders.created", "audit.orders"):
        assert h.stored(name) == []


async def test_a_body_over_the_size_limit_answers_8(redis_url, key_prefix, redis_client):
    async with running_runtime(redis_url, key_prefix, limits=Limits(max_event_bytes=500)) as h:
        response = await h.client.post("/eventmesh/publish/orders.shipped",
                                       data=orjson.dumps({"blob": "x" * 1000}),
                                       headers={"passwd": key_for("billing")})
        body = await reply(response)
        assert body["retCode"] == 8 and "the limit is 500" in body["retMsg"]
        response = await h.client.post("/eventmesh/publish/orders.shipped", data=b"",
                                       headers={"passwd": key_for("billing")})
        assert (await reply(response))["retCode"] == 7
        assert h.stored("orders.shipped") == []


async def test_a_batch_is_checked_whole_before_anything_is_stored(h):
    body = await reply(await h.client.post("/eventmesh/publish",
                                           **batch_form([entry(1), entry(2, topic="audit.orders")])))
    assert body["retCode"] == 22
    assert h.stored("orders.shipped") == [] and h.stored("audit.orders") == []


async def test_the_cloudevents_api_is_unaffected(h):
    assert (await h.publish("orders.shipped", event(1))).status == 202
