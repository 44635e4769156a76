"""The Redis Streams store against the real Redis: the contract the delivery side builds on."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import redis.asyncio as aioredis

from meshruntime.store import (
    AppendEntry,
    JourneyStep,
    RedisStreamsStore,
    Retention,
    Store,
    StoreError,
    open_store,
)


def event(i: int, topic: str = "orders.created") -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": f"e{i}", "source": "/t", "type": "t", "data": {"i": i}})


def test_the_redis_store_implements_the_protocol(store):
    assert isinstance(store, Store)


async def test_it_appends_in_order_and_returns_ids(store, redis_client, keys):
    ids = await store.append_many([AppendEntry("orders.created", event(i)) for i in range(5)])
    assert len(ids) == 5 and ids == sorted(ids, key=lambda s: tuple(map(int, s.split("-"))))
    rows = redis_client.xrange(keys.topic("orders.created"))
    assert [r[0].decode() for r in rows] == ids
    assert [r[1][b"event"] for r in rows] == [event(i) for i in range(5)]
    assert [e.event for e in await store.read_range("orders.created")] == [event(i) for i in range(5)]
    assert await store.length("orders.created") == 5


async def test_it_writes_journey_steps_in_the_same_round_trip(store, redis_client, keys):
    step = orjson.dumps({"step": "stored", "at": 1})
    await store.append_many([AppendEntry("a.b", event(1))], journey=[JourneyStep("e1", step)])
    key = keys.journey("e1")
    assert redis_client.lrange(key, 0, -1) == [step]
    assert 0 < redis_client.ttl(key) <= 60


async def test_it_applies_max_length_on_append_and_both_limits_on_trim(store):
    retention = Retention(max_length=10)
    for _ in range(30):
        await store.append_many([AppendEntry("t.len", event(i), retention) for i in range(100)])
    # approximate trimming keeps at most one macro node more than asked for
    assert await store.length("t.len") < 3000
    # 250 events from 1970 (explicit ids), then 10 of today: an hour's retention drops the old
    # ones; approximate trimming removes whole nodes of 100, so at least 200 go, no new one does
    for i in range(1, 251):
        await store.client.xadd(store.stream_key("t.age"), {"event": event(i)}, id=f"{i}-0")
    await store.append_many([AppendEntry("t.age", event(i)) for i in range(10)])
    removed = await store.trim("t.age", Retention(max_age_seconds=3600))
    assert 200 <= removed <= 250 and await store.length("t.age") == 260 - removed
    assert await store.trim("t.missing", Retention(max_length=5, max_age_seconds=5)) == 0


async def test_it_appends_with_max_age_only(store, redis_client, keys):
    ids = await store.append_many([AppendEntry("t.age", event(1), Retention(max_age_seconds=60))])
    assert redis_client.xlen(keys.topic("t.age")) == 1 and ids


async def test_consumer_group_round_trip(store):
    assert await store.ensure_group("orders.created", "sub-1", "0") is True
    assert await store.ensure_group("orders.created", "sub-1", "0") is False
    ids = await store.append_many([AppendEntry("orders.created", event(i)) for i in range(3)])
    info = await store.group_info("orders.created", "sub-1")
    assert info is not None and info.lag == 3 and info.pending == 0

    got = await store.read_group("orders.created", "sub-1", "c1", count=10, block_ms=100)
    assert [e.id for e in got] == ids and got[0].event == event(0)
    info = await store.group_info("orders.created", "sub-1")
    assert info.lag == 0 and info.pending == 3 and info.consumers == 1 and info.last_delivered_id == ids[-1]

    assert await store.ack("orders.created", "sub-1", ids[:1]) == 1
    pending = await store.pending("orders.created", "sub-1", 10)
    assert [p.id for p in pending] == ids[1:] and all(p.deliveries == 1 for p in pending)
    # a consumer re-reads its own pending entries after a restart; that counts as a delivery
    again = await store.read_group("orders.created", "sub-1", "c1", 10, pending=True)
    assert [e.id for e in again] == ids[1:]
    assert all(p.deliveries == 2 for p in await store.pending("orders.created", "sub-1", 10))

    claimed = await store.claim_stale("orders.created", "sub-1", "c2", min_idle_ms=0, count=10)
    assert [e.id for e in claimed.entries] == ids[1:] and claimed.missing_ids == []
    assert {p.consumer for p in await store.pending("orders.created", "sub-1", 10)} == {"c2"}

    assert await store.remove_group("orders.created", "sub-1") is True
    assert await store.group_info("orders.created", "sub-1") is None
    assert await store.remove_group("orders.missing", "sub-1") is False


async def test_read_group_blocks_until_an_event_arrives(store):
    await store.ensure_group("t.block", "sub-2", "$")
    reader = asyncio.create_task(store.read_group("t.block", "sub-2", "c", count=5, block_ms=5000))
    await asyncio.sleep(0)
    started = time.monotonic()
    # a second client: the reader's connection is busy blocking
    await store.append_many([AppendEntry("t.block", event(7))])
    got = await asyncio.wait_for(reader, 5)
    assert [e.event for e in got] == [event(7)] and time.monotonic() - started < 4


async def test_claim_reports_entries_trimmed_before_their_ack(store):
    await store.ensure_group("t.trim", "sub-3", "0")
    await store.append_many([AppendEntry("t.trim", event(i)) for i in range(3)])
    await store.read_group("t.trim", "sub-3", "c1", count=3)
    await store.client.xtrim(store.stream_key("t.trim"), maxlen=0, approximate=False)
    claimed = await store.claim_stale("t.trim", "sub-3", "c2", min_idle_ms=0, count=10)
    assert claimed.entries == [] and len(claimed.missing_ids) == 3


async def test_dead_letter_records_the_event_and_acks_it(store):
    await store.ensure_group("t.dlq", "sub-4", "0")
    await store.append_many([AppendEntry("t.dlq", event(1))])
    [entry] = await store.read_group("t.dlq", "sub-4", "c1", count=1)
    dlq_id = await store.dead_letter("sub-4", entry, "http 410", 410, 1)
    assert dlq_id
    [row] = await store.read_dead_letters("sub-4")
    assert row["event"] == event(1) and row["reason"] == b"http 410" and row["status"] == b"410"
    assert row["attempts"] == b"1" and row["source_id"] == entry.id.encode()
    assert (await store.group_info("t.dlq", "sub-4")).pending == 0


async def test_groups_of_a_missing_topic_are_empty(store):
    assert await store.groups("t.none") == []


async def test_it_reports_failures_as_store_errors():
    store = RedisStreamsStore.from_url("redis://127.0.0.1:1/0")
    assert await store.ping() is False
    with pytest.raises(StoreError):
        await store.append_many([AppendEntry("a", b"{}")])
    await store.close()


def test_open_store_refuses_unknown_engines():
    with pytest.raises(ValueError, match="no engine for 'amqp://localhost:5672'"):
        open_store("amqp://localhost:5672")


async def test_a_store_built_on_a_client_appends_through_redis_py(redis_url, key_prefix, keys, redis_client):
    client = aioredis.Redis.from_url(redis_url)
    store = RedisStreamsStore(client, prefix=key_prefix, owns_client=True)
    step = orjson.dumps({"step": "stored"})
    ids = await store.append_many([AppendEntry("t.py", event(i), Retention(max_length=100)) for i in range(3)],
                                  journey=[JourneyStep("e9", step)])
    assert [e.id for e in await store.read_range("t.py")] == ids
    assert redis_client.lrange(keys.journey("e9"), 0, -1) == [step]
    await store.close()


async def test_the_append_connection_survives_a_server_side_disconnect(store, redis_client, key_prefix):
    await store.append_many([AppendEntry("t.kill", event(1))])
    # Redis drops every client connection of ours, as a restart would
    killed = 0
    for client in redis_client.client_list():
        if client.get("cmd") in ("xadd", "pexpire", "rpush"):
            killed += redis_client.client_kill_filter(_id=client["id"])
    assert killed >= 1
    ids = await store.append_many([AppendEntry("t.kill", event(2))])
    assert len(ids) == 1 and await store.length("t.kill") == 2


async def test_errors_of_single_commands_fail_the_append(store, redis_client, keys):
    redis_client.set(keys.topic("t.wrong"), "not a stream")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        await store.append_many([AppendEntry("t.wrong", event(1))])
    # the connection stays usable: every reply was read
    assert await store.append_many([AppendEntry("t.fine", event(1))])


async def test_reads_and_acks_answer_the_same_on_raw_connections_and_through_redis_py(
    store, redis_url, key_prefix, redis_client
):
    """``read_group`` and ``ack`` go over pre-packed RESP when the store has a URL; a store on a
    client uses redis-py. Both must see the same entries, skip the same trimmed ones, read
    entries with more fields than ``event``, and fail the same way."""
    on_client = RedisStreamsStore(aioredis.Redis.from_url(redis_url), prefix=key_prefix, owns_client=True)
    stream = store.stream_key("t.same")
    try:
        for s in (store, on_client):
            assert s._resp is not None if s is store else s._resp is None  # noqa: SLF001
        ids = await store.append_many([AppendEntry("t.same", event(i)) for i in range(4)])
        extra = redis_client.xadd(stream, {"source": b"x", "event": event(9)})
        for group, s in (("g-raw", store), ("g-py", on_client)):
            await s.ensure_group("t.same", group, "0")
            got = await s.read_group("t.same", group, "c1", count=10, block_ms=100)
            assert [(e.id, e.event) for e in got] == [*zip(ids, [event(i) for i in range(4)], strict=True),
                                                      (extra.decode(), event(9))]
            assert await s.read_group("t.same", group, "c1", count=10, block_ms=50) == []
            assert await s.ack("t.same", group, ids[:2]) == 2
        redis_client.xdel(stream, ids[2])  # gone before its ack: a pending read skips it
        for group, s in (("g-raw", store), ("g-py", on_client)):
            again = await s.read_group("t.same", group, "c1", count=10, pending=True)
            assert [e.id for e in again] == [ids[3], extra.decode()]
            with pytest.raises(StoreError, match="NOGROUP"):
                await s.read_group("t.same", "no-such-group", "c1", count=1, block_ms=10)
    finally:
        await on_client.close()
    down = RedisStreamsStore.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(StoreError):
        await down.read_group("t.same", "g", "c", count=1, block_ms=10)
    with pytest.raises(StoreError):
        await down.ack("t.same", "g", ["1-0"])
    await down.close()
