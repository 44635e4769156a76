"""tracing.hub against the real Redis: one subscription per channel per process, whatever the number
of viewers; the watch key lives while any process has a viewer and expires after the last leaves."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from meshruntime.tapwire import encode
from tests.portal_support.waiting import until
from tracing.hub import Stream, WatchHub


@pytest.fixture
async def hubs(redis_url):
    """``make()`` is a hub as one portal process has (TTL 1 s, no grace); all closed at the end."""
    made: list[WatchHub] = []

    def make() -> WatchHub:
        made.append(WatchHub(redis_url, ttl=1, grace=0))
        return made[-1]

    yield make
    for hub in made:
        await hub.close()


async def test_viewers_in_two_processes_keep_the_key_alive_until_the_last_leaves(hubs, keys, redis_client):
    stream = Stream(keys.tap("orders.created"), keys.tap_watch("orders.created"))
    first_process, second_process = hubs(), hubs()
    got: list[list] = [[], [], []]
    sinks = [lambda m: got[0].append(m.items()), lambda m: got[1].append(m.items()),
             lambda m: got[2].append(m.items())]
    await first_process.watch(stream, sinks[0])
    await first_process.watch(stream, sinks[1])
    await second_process.watch(stream, sinks[2])
    channel = stream.channel.encode()
    assert dict(redis_client.pubsub_numsub(stream.channel)) == {channel: 2}  # one per process, not per viewer
    assert redis_client.exists(stream.watch_key)

    redis_client.publish(stream.channel, orjson.dumps([{"n": 1}, {"n": 2}]))
    await until(lambda: all(got), "every viewer to get the message")
    assert got == [[[{"n": 1}, {"n": 2}]]] * 3  # parsed once, handed to each viewer

    await first_process.unwatch(stream, sinks[0])
    await first_process.unwatch(stream, sinks[1])
    await until(lambda: dict(redis_client.pubsub_numsub(stream.channel)) == {channel: 1}, "the first to unsubscribe")
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 3:  # three TTLs: the second process alone keeps it alive
        assert redis_client.exists(stream.watch_key)
        await asyncio.sleep(0.1)  # observing over a span of time, not waiting for a condition

    await second_process.unwatch(stream, sinks[2])
    await until(lambda: not redis_client.exists(stream.watch_key), "the watch key to expire", timeout=3)
    assert dict(redis_client.pubsub_numsub(stream.channel)) == {channel: 0}


async def test_a_channel_in_its_grace_is_kept_for_a_viewer_who_comes_back(redis_url, keys, redis_client):
    hub = WatchHub(redis_url, ttl=1, grace=30)
    stream = Stream(keys.topic_refusals("orders.failed"), keys.topic_refusals_watch("orders.failed"), keep=2)
    seen: list = []
    sink = seen.append
    try:
        await hub.watch(stream, sink)
        for n in range(3):
            redis_client.publish(stream.channel, orjson.dumps([{"n": n}]))
        await until(lambda: len(seen) == 3, "three messages")
        await hub.unwatch(stream, sink)  # a page reload: gone, and back within the grace
        assert await hub.watch(stream, sink) == [{"n": 1}, {"n": 2}]  # the last two kept
        assert dict(redis_client.pubsub_numsub(stream.channel)) == {stream.channel.encode(): 1}
    finally:
        await hub.close()


async def test_a_runtimes_framed_message_reaches_every_viewer_and_garbage_reaches_none(hubs, keys, redis_client):
    stream = Stream(keys.tap("orders.created"), keys.tap_watch("orders.created"))
    hub = hubs()
    got: list = []
    await hub.watch(stream, got.append)
    redis_client.publish(stream.channel, b"not a tap message")  # logged and ignored
    [data] = encode([orjson.dumps({"n": 1}), orjson.dumps({"n": 2})], dropped=3)
    redis_client.publish(stream.channel, data)
    await until(lambda: got, "the message")
    [message] = got
    assert (len(message), message.dropped, message.decoded) == (2, 3, 0)  # nothing decoded until asked
    assert message.items() == [{"n": 1}, {"n": 2}]
