"""The reply path of request–reply on its own, against the real Redis: what the delivering side
posts (and drops), and how the waiting side finds it, doorbell or not."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from factories import make_config, subscription

from meshruntime.config import ConfigError, seal, validate_document
from meshruntime.replies import (
    MAX_REPLY_BYTES,
    REPLY_BY_EXTENSION,
    REPLY_TO_EXTENSION,
    Reply,
    ReplyPoster,
    ReplyWaiter,
    deadline_text,
)
from meshruntime.store.redis_streams import make_client


@pytest.fixture
async def client(redis_url, redis_client):
    client = make_client(redis_url)
    yield client
    await client.aclose()


def request_event(token: str, seconds: float = 5.0, **extra) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": "e-1", "source": "/", "type": "t", REPLY_TO_EXTENSION: token,
                         REPLY_BY_EXTENSION: deadline_text(time.time() + seconds), **extra})


async def test_a_reply_is_taken_by_the_request_waiting_for_it(client, key_prefix):
    waiter, poster = ReplyWaiter(client, key_prefix), ReplyPoster(client, key_prefix)
    await waiter.start()
    token = waiter.expect()
    poster.offer(request_event(token), "sub-2", 200, "application/json", b'{"pong": 1}')
    started = time.monotonic()
    reply = await waiter.wait(token, 5.0)
    assert reply == Reply("sub-2", 200, "application/json", b'{"pong": 1}')
    assert time.monotonic() - started < 2.0  # woken by the doorbell, not the deadline
    assert poster.posted == 1 and waiter.waiting == 0
    await waiter.stop()


async def test_a_lost_doorbell_costs_time_not_the_reply(client, key_prefix, keys, redis_client):
    waiter = ReplyWaiter(client, key_prefix)
    await waiter.start()
    token = waiter.expect()
    # the reply is in its list, but nobody rang (as when the channel connection was down)
    redis_client.rpush(keys.reply(token), Reply("sub-2", 200, None, b"late").encode())
    reply = await waiter.wait(token, 0.2)
    assert reply is not None and reply.body == b"late"
    await waiter.stop()


async def test_the_poster_leaves_events_that_are_not_requests_alone(client, key_prefix, keys, redis_client):
    poster = ReplyPoster(client, key_prefix)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.replies)
    poster.offer(orjson.dumps({"specversion": "1.0", "id": "e-1", "source": "/", "type": "t"}), "sub-2", 200,
                 None, b"ok")
    poster.offer(request_event("tok-r", meshroute="route-1"), "sub-2", 200, None, b"copy")
    poster.offer(request_event("tok-late", seconds=-1), "sub-2", 200, None, b"late")
    poster.offer(orjson.dumps({REPLY_TO_EXTENSION: "tok-x", REPLY_BY_EXTENSION: "soon"}), "sub-2", 200, None, b"")
    await poster.drain()
    assert poster.posted == 0
    assert poster.dropped == {"routed copy": 1, "after the deadline": 1, "malformed request": 1}
    assert list(redis_client.scan_iter(match=f"{key_prefix}reply:*")) == []


async def test_an_answer_too_long_to_be_a_reply_is_posted_as_the_reason(client, key_prefix, keys, redis_client):
    poster = ReplyPoster(client, key_prefix)
    poster.offer(request_event("tok-big"), "sub-2", 200, "text/plain", b"x" * MAX_REPLY_BYTES)
    await poster.drain()
    [raw] = redis_client.lrange(keys.reply("tok-big"), 0, -1)
    reply = Reply.decode(raw)
    assert reply.body == b"" and "replies must be shorter" in reply.error
    assert 0 < redis_client.pttl(keys.reply("tok-big")) <= 5_000 + 5_000  # the deadline, then 5 s


async def test_stopping_wakes_every_waiting_request(client, key_prefix):
    waiter = ReplyWaiter(client, key_prefix)
    await waiter.start()
    token = waiter.expect()
    waiting = asyncio.create_task(waiter.wait(token, 30.0))
    await waiter.stop()
    async with asyncio.timeout(2):
        assert await waiting is None


def test_a_document_gives_a_topic_at_most_one_responder():
    doc = make_config(subscriptions=[subscription("sub-1", "orders.created", "shipping", responder=True),
                                     subscription("sub-2", "orders.created", "billing", responder=True)])
    with pytest.raises(ConfigError, match=r"subscriptions\[1\].responder: topic 'orders.created' already has a "
                                          r"responder, subscriptions\[0\] \(sub-1\); a topic has at most one"):
        validate_document(seal(doc, doc["version"]))
    doc["subscriptions"][1]["responder"] = False
    assert validate_document(seal(doc, doc["version"]))["subscriptions"][0]["responder"] is True
