"""meshruntime.consumer_groups: one reading of a stream's groups and lag for runtime and portal.

Runs on whichever Redis the suite has: 6.2 (embedded; lag is counted by the script) or 7.x
(``REDIS_URL``; the server reports lag, and the script counts only when it says it does not know).
"""

from __future__ import annotations

import pytest
import redis
import redis.asyncio as aioredis

from meshruntime.consumer_groups import GROUPS_SCRIPT, LAG_SCAN_CAP, ConsumerGroup, parse_groups
from meshruntime.delivery_admin import DeliveryOperations
from meshruntime.keys import KeySpace
from meshruntime.store import open_store


def _groups(client: redis.Redis, key: str, cap: int = LAG_SCAN_CAP) -> list[ConsumerGroup]:
    return parse_groups(client.eval(GROUPS_SCRIPT, 1, key, cap))


def _server_reports_lag(client: redis.Redis, key: str) -> bool:
    return "lag" in client.xinfo_groups(key)[0]


def test_it_reports_every_group_with_its_lag(redis_client, key_prefix) -> None:
    key = KeySpace(key_prefix).topic("t.lag")
    ids = [redis_client.xadd(key, {"event": b"{}"}).decode() for _ in range(5)]
    redis_client.xgroup_create(key, "sub-1", id="0")
    redis_client.xgroup_create(key, "sub-2", id=ids[1])
    redis_client.xreadgroup("sub-1", "rt-a", {key: ">"}, count=2)
    assert sorted(_groups(redis_client, key)) == [
        ConsumerGroup("sub-1", 1, 2, ids[1], 3),
        ConsumerGroup("sub-2", 0, 0, ids[1], 3),
    ]


def test_a_lag_beyond_the_cap_is_unknown_when_it_must_be_counted(redis_client, key_prefix) -> None:
    key = KeySpace(key_prefix).topic("t.cap")
    for _ in range(5):
        redis_client.xadd(key, {"event": b"{}"})
    redis_client.xgroup_create(key, "sub-1", id="0")
    [group] = _groups(redis_client, key, cap=4)
    # Redis 7 knows the lag (5) and is not asked to count; on 6.2 five entries exceed a cap of 4
    assert group.lag == (5 if _server_reports_lag(redis_client, key) else None)
    [group] = _groups(redis_client, key, cap=5)
    assert group.lag == 5


def test_the_servers_errors_come_through_as_they_are(redis_client, key_prefix) -> None:
    keys = KeySpace(key_prefix)
    with pytest.raises(redis.ResponseError, match="(?i)no such key"):
        _groups(redis_client, keys.topic("t.missing"))
    redis_client.set(keys.topic("t.string"), "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        _groups(redis_client, keys.topic("t.string"))


async def test_the_store_and_the_portal_read_the_same_lag(redis_url, redis_client, key_prefix) -> None:
    keys = KeySpace(key_prefix)
    for _ in range(7):
        redis_client.xadd(keys.topic("t.same"), {"event": b"{}"})
    redis_client.xgroup_create(keys.topic("t.same"), "sub-1", id="0")
    redis_client.xreadgroup("sub-1", "rt-a", {keys.topic("t.same"): ">"}, count=3)
    store = open_store(redis_url, prefix=key_prefix)
    try:
        info = await store.group_info("t.same", "sub-1")
    finally:
        await store.close()
    state = DeliveryOperations(redis_client, key_prefix).state("sub-1", "t.same")
    assert (info.lag, info.pending, info.consumers) == (state.lag, state.pending, state.consumers) == (4, 3, 1)


async def test_the_runtimes_asyncio_client_runs_the_same_script(redis_url, redis_client, key_prefix) -> None:
    key = KeySpace(key_prefix).topic("t.async")
    redis_client.xadd(key, {"event": b"{}"})
    redis_client.xgroup_create(key, "sub-1", id="0")
    client = aioredis.Redis.from_url(redis_url)
    try:
        reply = await client.register_script(GROUPS_SCRIPT)(keys=[key], args=[LAG_SCAN_CAP])
    finally:
        await client.aclose()
    assert [group.lag for group in parse_groups(reply)] == [1]
