"""The delivery engine against the real Redis and a real HTTP receiver, in one process.

Events are appended to the store directly (the publish path has its own tests); the engine
reads them through its consumer groups and pushes them to a :class:`Receiver` on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from delivery_harness import FAST, SECRET, TOPIC, event, group_row, hold_answers, publish, sample
from factories import make_config, subscription

from meshruntime.delivery import DeliverySettings, verify
from meshruntime.delivery_admin import DeliveryOperations
from meshruntime.demo.receiver import Received, Receiver
from meshruntime.keys import KeySpace
from meshruntime.store import AppendEntry
from tests.portal_support.waiting import until


def sub(id: str = "sub-1", url: str = "http://127.0.0.1:9/", *, app: str = "shipping", topic: str = TOPIC,
        filters: list | None = None, state: str = "active", **delivery: Any) -> dict[str, Any]:
    settings = {"url": url, "timeout_ms": 2000, "max_attempts": 4, "backoff_base_ms": 20,
                "backoff_cap_ms": 200, "max_in_flight": 8, **delivery}
    return subscription(id, topic, app, delivery=settings, filters=filters or [], state=state)


def config(*subs: dict[str, Any], version: int = 1) -> dict[str, Any]:
    return make_config(bare=True, version=version, topics=[TOPIC, "orders.shipped"],
                       applications=["shipping", "billing"], subscriptions=list(subs))


def statuses(sequence: list[int]) -> Callable:
    """A respond hook answering each event with the given statuses in turn, then 200."""
    seen: dict[str, int] = {}

    async def respond(received: Received, request: web.Request):
        count = seen.get(received.event_id, 0)
        seen[received.event_id] = count + 1
        if count < len(sequence):
            return web.Response(status=sequence[count])
        return None

    return respond


def dead_letters(redis_client, keys: KeySpace, sub_id: str = "sub-1") -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items() if k != b"event"} | {"event": fields[b"event"]}
            for _id, fields in redis_client.xrange(keys.dlq(sub_id))]


def journey(redis_client, keys: KeySpace, event_id: str) -> list[dict]:
    return [orjson.loads(s) for s in redis_client.lrange(keys.journey(event_id), 0, -1)]


# -- the happy path ----------------------------------------------------------------------------


async def test_it_pushes_binary_mode_signed_and_acknowledges(store, receiver, managers, redis_client, keys):
    manager = await managers(config(sub(url=receiver.url)))
    await publish(store, 3)
    await receiver.wait_for(lambda r: len(r.ids()) == 3)
    first = receiver.received[0]
    assert first.mode == "binary"
    assert first.headers["ce-id"] == "e0" and first.headers["ce-type"] == "com.example.order.created"
    assert first.headers["Content-Type"] == "application/json"
    assert orjson.loads(first.body) == {"order_id": "o0"}
    assert first.subscription == "sub-1" and first.attempt == 1
    verify(SECRET, first.headers["Mesh-Signature"], first.body)
    assert receiver.bad_signatures == 0
    await until(lambda: redis_client.xpending(keys.topic(TOPIC), "sub-1")["pending"] == 0,
                "every event of sub-1 acknowledged")
    assert sample(manager, "meshruntime_deliveries_total", subscription="sub-1", outcome="delivered") == 3
    assert sample(manager, "meshruntime_delivery_latency_seconds_count", subscription="sub-1") == 3
    await manager.journal.drain()
    steps = journey(redis_client, keys, "e0")
    assert [s["step"] for s in steps] == ["attempt", "acked"]
    assert steps[0]["status"] == 200 and steps[0]["subscription"] == "sub-1" and steps[0]["latency_ms"] >= 0


async def test_structured_mode_sends_the_stored_event_byte_for_byte(store, receiver, managers):
    await managers(config(sub(url=receiver.url, mode="structured")))
    await publish(store, 1)
    await receiver.wait_for(lambda r: len(r.ids()) == 1)
    got = receiver.received[0]
    assert got.mode == "structured"
    assert got.headers["Content-Type"] == "application/cloudevents+json"
    assert got.body == event(0)
    verify(SECRET, got.headers["Mesh-Signature"], got.body)


async def test_filters_decide_what_is_delivered_and_the_rest_is_acknowledged(
        store, receiver, managers, redis_client, keys):
    manager = await managers(config(sub(url=receiver.url, filters=[{"prefix": {"type": "com.example.order."}}])))
    await store.append_many([AppendEntry(TOPIC, event(1)), AppendEntry(TOPIC, event(2, type_="com.other")),
                             AppendEntry(TOPIC, event(3))])
    await receiver.wait_for(lambda r: len(r.ids()) == 2)
    await until(lambda: sample(manager, "meshruntime_deliveries_total", subscription="sub-1",
                               outcome="filtered") == 1, "a filtered event counted")
    await until(lambda: redis_client.xpending(keys.topic(TOPIC), "sub-1")["pending"] == 0,
                "every event of sub-1 acknowledged")
    assert receiver.ids() == ["e1", "e3"]


async def test_each_application_delivers_only_its_own_subscriptions_and_a_gateway_all(
        store, receiver, managers, redis_client, key_prefix):
    doc = config(sub("sub-1", receiver.url), sub("sub-2", receiver.url, app="billing"))
    sidecar = await managers(doc, consumer="rt-shipping", application="shipping")
    assert set(sidecar.workers) == {"sub-1"}
    gateway = await managers(doc, consumer="rt-gw", application=None)
    assert set(gateway.workers) == {"sub-1", "sub-2"}


# -- retries and dead letters ------------------------------------------------------------------


async def test_5xx_and_408_are_retried_until_the_subscriber_answers_2xx(
        store, receiver, managers, redis_client, keys):
    receiver.respond = statuses([500, 503, 408])
    manager = await managers(config(sub(url=receiver.url, max_attempts=5)))
    await publish(store, 2)
    await receiver.wait_for(lambda r: len(r.ids()) == 2)
    assert [status for event_id, status in receiver.answered if event_id == "e0"] == [500, 503, 408, 200]
    assert [r.attempt for r in receiver.received if r.event_id == "e0"] == [1, 2, 3, 4]
    assert sample(manager, "meshruntime_delivery_retries_total", subscription="sub-1") == 6
    await until(lambda: redis_client.xpending(keys.topic(TOPIC), "sub-1")["pending"] == 0,
                "every event of sub-1 acknowledged")
    assert dead_letters(redis_client, keys) == []
    await manager.journal.drain()
    steps = journey(redis_client, keys, "e0")
    assert [(s["step"], s.get("status"), s.get("outcome")) for s in steps] == [
        ("attempt", 500, "retry"), ("attempt", 503, "retry"), ("attempt", 408, "retry"),
        ("attempt", 200, "delivered"), ("acked", 200, None)]


async def test_a_4xx_is_dead_lettered_at_once(store, receiver, managers, redis_client, keys):
    receiver.respond = statuses([400])
    manager = await managers(config(sub(url=receiver.url, max_attempts=5)))
    await publish(store, 1)
    await until(lambda: len(dead_letters(redis_client, keys)) == 1, "a dead letter")
    (letter,) = dead_letters(redis_client, keys)
    assert letter["status"] == "400" and letter["attempts"] == "1"
    assert letter["reason"].startswith("rejected: HTTP 400")
    assert letter["event"] == event(0)
    assert receiver.answered == [("e0", 400)]
    assert redis_client.xpending(keys.topic(TOPIC), "sub-1")["pending"] == 0
    await until(lambda: sample(manager, "meshruntime_dead_letters_total", subscription="sub-1",
                               reason="rejected") == 1, "a rejected event counted as dead-lettered")
    await manager.journal.drain()
    assert [s["step"] for s in journey(redis_client, keys, "e0")] == ["attempt", "dead_lettered"]


async def test_redirects_are_not_followed_but_dead_lettered(store, receiver, managers, redis_client, keys):
    async def moved(received, request):
        return web.Response(status=301, headers={"Location": "http://127.0.0.1:9/elsewhere"})

    receiver.respond = moved
    await managers(config(sub(url=receiver.url)))
    await publish(store, 1)
    await until(lambda: len(dead_letters(redis_client, keys)) == 1, "a dead letter")
    assert "redirects are not followed" in dead_letters(redis_client, keys)[0]["reason"]


async def test_an_unreachable_subscriber_is_retried_then_dead_lettered(store, managers, redis_client, keys):
    manager = await managers(config(sub(url="http://127.0.0.1:9/hook", max_attempts=3)))
    await publish(store, 1)
    await until(lambda: len(dead_letters(redis_client, keys)) == 1, "a dead letter")
    (letter,) = dead_letters(redis_client, keys)
    assert letter["attempts"] == "3" and letter["status"] == ""
    assert letter["reason"].startswith("exhausted: 3 attempts, the last: cannot connect to 127.0.0.1:9")
    assert sample(manager, "meshruntime_delivery_retries_total", subscription="sub-1") == 2
    await until(lambda: sample(manager, "meshruntime_deliveries_total", subscription="sub-1",
                               outcome="dead_lettered") == 1, "a dead-lettered delivery counted")


async def test_a_timeout_is_retried(store, receiver, managers):
    async def slow_first(received, request):
        if received.attempt == 1:
            await asyncio.sleep(1)
        return None

    receiver.respond = slow_first
    await managers(config(sub(url=receiver.url, timeout_ms=100)))
    await publish(store, 1)
    await receiver.wait_for(lambda r: any(a == 2 for a in [x.attempt for x in r.received]), timeout=5)
    await receiver.wait_for(lambda r: ("e0", 200) in r.answered and len(r.received) == 2, timeout=5)


async def test_429_waits_for_retry_after_but_never_longer_than_the_backoff_cap(store, receiver, managers):
    async def busy_once(received, request):
        if received.attempt == 1:
            return web.Response(status=429, headers={"Retry-After": "1" if received.event_id == "e0" else "3600"})
        return None

    receiver.respond = busy_once
    await managers(config(sub(url=receiver.url, backoff_base_ms=10, backoff_cap_ms=1500, max_in_flight=2)))
    await publish(store, 2)
    await receiver.wait_for(lambda r: len(r.ids()) == 2, timeout=6)
    times = {(r.event_id, r.attempt): r.at for r in receiver.received}
    assert 0.95 <= times[("e0", 2)] - times[("e0", 1)] < 1.45  # Retry-After: 1 honoured (backoff ~10 ms)
    assert 1.45 <= times[("e1", 2)] - times[("e1", 1)] < 2.5  # an hour asked, the 1.5 s cap applied


async def test_exhausted_attempts_dead_letter_with_the_last_status(store, receiver, managers, redis_client, keys):
    receiver.respond = statuses([502, 502, 502, 502])
    await managers(config(sub(url=receiver.url, max_attempts=3)))
    await publish(store, 1)
    await until(lambda: len(dead_letters(redis_client, keys)) == 1, "a dead letter")
    (letter,) = dead_letters(redis_client, keys)
    assert (letter["status"], letter["attempts"]) == ("502", "3")
    assert letter["reason"].startswith("exhausted: 3 attempts, the last: HTTP 502")
    assert len(receiver.received) == 3


# -- concurrency and order ---------------------------------------------------------------------


async def test_max_in_flight_one_delivers_in_order_even_through_retries(store, receiver, managers):
    seen: set[str] = set()

    async def flaky(received, request):  # every third event fails its first attempt
        if int(received.event_id[1:]) % 3 == 0 and received.event_id not in seen:
            seen.add(received.event_id)
            return web.Response(status=503)
        return None

    receiver.respond = flaky
    await managers(config(sub(url=receiver.url, max_in_flight=1, backoff_base_ms=5, backoff_cap_ms=20)))
    await publish(store, 30)
    await receiver.wait_for(lambda r: len(r.ids()) == 30)
    assert receiver.ids() == [f"e{i}" for i in range(30)]
    assert receiver.max_concurrent == 1


async def test_max_in_flight_bounds_concurrent_requests(store, receiver, managers):
    async def slow(received, request):
        await asyncio.sleep(0.05)

    receiver.respond = slow
    await managers(config(sub(url=receiver.url, max_in_flight=4)))
    await publish(store, 40)
    await receiver.wait_for(lambda r: len(r.ids()) == 40)
    assert receiver.max_concurrent == 4


async def test_max_in_flight_holds_while_filtered_events_free_their_slots_at_once(store, receiver, managers):
    async def slow(received, request):
        await asyncio.sleep(0.05)

    receiver.respond = slow
    # the first read takes 4 into the slots (2 filtered at once) and 4 ahead, starting with a
    # filtered one: starting that one frees its slot while the others are being started
    types = ["keep", "keep", "drop", "drop", "drop"] + ["keep"] * 20
    manager = await managers(config(sub(url=receiver.url, max_in_flight=4, state="paused",
                                        filters=[{"exact": {"type": "keep"}}])))
    await store.append_many([AppendEntry(TOPIC, event(i, type_=t)) for i, t in enumerate(types)])
    manager.apply_config(config(sub(url=receiver.url, max_in_flight=4, filters=[{"exact": {"type": "keep"}}]),
                                version=2))
    await receiver.wait_for(lambda r: len(r.ids()) == 22)
    assert receiver.max_concurrent == 4


# -- live configuration ------------------------------------------------------------------------


async def test_a_new_subscription_starts_delivering_when_its_config_arrives(store, receiver, managers):
    manager = await managers(config())
    assert manager.workers == {}
    manager.apply_config(config(sub(url=receiver.url), version=2))
    await manager.reconciled()
    await publish(store, 2)
    await receiver.wait_for(lambda r: len(r.ids()) == 2)


async def test_pausing_keeps_the_position_and_lets_the_attempt_under_way_finish(
        store, receiver, managers, redis_client, keys):
    gate = asyncio.Event()

    async def held(received, request):
        if received.event_id == "e0":
            await gate.wait()
        return None

    receiver.respond = held
    manager = await managers(config(sub(url=receiver.url, max_in_flight=1)))
    await publish(store, 1)
    await until(lambda: receiver.concurrent == 1, "e0 mid-request")
    manager.apply_config(config(sub(url=receiver.url, max_in_flight=1, state="paused"), version=2))
    await manager.reconciled()
    await publish(store, 3, start=1)
    gate.set()  # the attempt under way completes and is acknowledged
    await receiver.wait_for(lambda r: r.ids() == ["e0"])
    await until(lambda: redis_client.xpending(keys.topic(TOPIC), "sub-1")["pending"] == 0,
                "every event of sub-1 acknowledged")
    await asyncio.sleep(0.5)  # a paused subscription must stay quiet: nothing else may arrive
    assert receiver.ids() == ["e0"]
    manager.apply_config(config(sub(url=receiver.url, max_in_flight=1), version=3))
    await receiver.wait_for(lambda r: r.ids() == ["e0", "e1", "e2", "e3"])


async def test_pausing_during_a_retry_wait_leaves_the_event_pending_for_the_resume(
        store, receiver, managers, redis_client, keys):
    receiver.respond = statuses([503])
    manager = await managers(config(sub(url=receiver.url, backoff_base_ms=60_000, backoff_cap_ms=60_000)))
    await publish(store, 1)
    await receiver.wait_for(lambda r: r.answered == [("e0", 503)])
    manager.apply_config(config(sub(url=receiver.url, state="paused", backoff_base_ms=60_000,
                                    backoff_cap_ms=60_000), version=2))
    await manager.reconciled()
    await until(lambda: manager.workers["sub-1"].held == 0, "the worker of sub-1 to hold nothing")
    assert redis_client.xpending(keys.topic(TOPIC), "sub-1")["pending"] == 1
    manager.apply_config(config(sub(url=receiver.url), version=3))  # resumed, with a short backoff
    await receiver.wait_for(lambda r: r.ids() == ["e0"])
    assert [r.attempt for r in receiver.received] == [1, 2]  # the attempt count survived the pause


async def test_revoking_removes_the_group_after_the_attempt_under_way(
        store, receiver, managers, redis_client, keys):
    gate = hold_answers(receiver)
    manager = await managers(config(sub(url=receiver.url)))
    await publish(store, 1)
    await until(lambda: receiver.concurrent == 1, "a delivery under way")
    manager.apply_config(config(version=2))
    await manager.reconciled()
    assert group_row(redis_client, keys, "sub-1") is not None  # still delivering e0
    gate.set()
    await receiver.wait_for(lambda r: r.answered == [("e0", 200)])
    await until(lambda: redis_client.xinfo_groups(keys.topic(TOPIC)) == [], "the consumer group of sub-1 removed")
    assert not redis_client.exists(keys.redeliver("sub-1"))
    # the series go last, once the retired worker's status record is deleted too
    await until(lambda: manager.metrics.registry.get_sample_value(
                    "meshruntime_deliveries_total", {"subscription": "sub-1", "outcome": "delivered"}) is None,
                "the metrics of sub-1 removed")
    assert not redis_client.exists(keys.delivery("sub-1"))


async def test_a_new_subscription_gets_what_was_published_after_its_document_was_compiled(
        store, receiver, managers):
    # the sample document is compiled before these events: the group starts there, not at "now"
    await publish(store, 2)
    await managers(config(sub(url=receiver.url)))
    await receiver.wait_for(lambda r: len(r.ids()) == 2)


# -- takeover, leases, redelivery --------------------------------------------------------------


async def test_events_a_dead_runtime_left_pending_are_taken_over_after_the_visibility_timeout(
        store, receiver, managers, redis_client, keys):
    key = keys.topic(TOPIC)
    redis_client.xgroup_create(key, "sub-1", id="0", mkstream=True)
    await publish(store, 5)
    # a runtime read them and died: five entries pending for "rt-dead"
    assert len(redis_client.xreadgroup("sub-1", "rt-dead", {key: ">"}, count=5)[0][1]) == 5
    started = time.monotonic()
    await managers(config(sub(url=receiver.url)), consumer="rt-live")
    await receiver.wait_for(lambda r: sorted(r.ids()) == [f"e{i}" for i in range(5)], timeout=10)
    assert time.monotonic() - started >= FAST.visibility_timeout_s
    assert {c["name"]: c["pending"] for c in redis_client.xinfo_consumers(key, "sub-1")}.get(b"rt-dead", 0) == 0


async def test_a_second_runtime_never_takes_over_an_event_still_being_delivered(
        store, receiver, managers):
    # the attempt lasts 3 visibility timeouts; the lease renewals keep the other runtime off it
    async def slow(received, request):
        await asyncio.sleep(3 * FAST.visibility_timeout_s)

    receiver.respond = slow
    doc = config(sub(url=receiver.url, timeout_ms=10_000))
    await managers(doc, consumer="rt-a")
    await publish(store, 1)
    await until(lambda: receiver.concurrent == 1, "a delivery under way")
    await managers(doc, consumer="rt-b")
    await receiver.wait_for(lambda r: len(r.answered) == 1, timeout=10)
    await asyncio.sleep(2 * FAST.visibility_timeout_s)
    assert receiver.answered == [("e0", 200)]


async def test_attempt_counts_survive_a_takeover(store, receiver, managers, redis_client, keys):
    key = keys.topic(TOPIC)
    manager = await managers(config(sub(url=receiver.url, max_attempts=4, state="paused")), consumer="rt-live")
    ids = await publish(store, 2)
    redis_client.xreadgroup("sub-1", "rt-dead", {key: ">"}, count=2)
    # the dead runtime had made 4 attempts on e0 (the maximum) and 1 on e1
    redis_client.xclaim(key, "sub-1", "rt-dead", 0, [ids[0]], retrycount=4, justid=True)
    redis_client.xclaim(key, "sub-1", "rt-dead", 0, [ids[1]], retrycount=1, justid=True)
    receiver.respond = statuses([500, 500, 500, 500])
    manager.apply_config(config(sub(url=receiver.url, max_attempts=4), version=3))
    await until(lambda: len(dead_letters(redis_client, keys)) == 2, "two dead letters", timeout=10)
    letters = {orjson.loads(d["event"])["id"]: d for d in dead_letters(redis_client, keys)}
    assert letters["e0"]["attempts"] == "4" and letters["e0"]["reason"].startswith("exhausted: 4 attempts made")
    assert letters["e1"]["attempts"] == "4"
    assert [r.attempt for r in receiver.received if r.event_id == "e1"] == [2, 3, 4]
    assert [r for r in receiver.received if r.event_id == "e0"] == []


async def test_own_pending_events_are_resumed_at_once_after_a_restart_under_the_same_name(
        store, receiver, managers, redis_client, keys):
    key = keys.topic(TOPIC)
    slow = DeliverySettings(visibility_timeout_s=60, block_ms=100, redeliver_poll_s=0.1)
    manager = await managers(config(sub(url=receiver.url, state="paused")), consumer="rt-a", settings=slow)
    await publish(store, 3)
    redis_client.xreadgroup("sub-1", "rt-a", {key: ">"}, count=3)  # read, then the process died
    manager.apply_config(config(sub(url=receiver.url), version=2))
    await receiver.wait_for(lambda r: len(r.ids()) == 3, timeout=3)  # no 60 s visibility wait


async def test_redelivery_reaches_only_its_subscription(store, receiver, managers, redis_client, keys):
    other = await Receiver(secret="whsec-sub-2-0123456789abcdef").start()
    try:
        await managers(config(sub("sub-1", receiver.url), sub("sub-2", other.url)), application=None)
        redis_client.xadd(keys.redeliver("sub-1"), {"event": event(7), "dlq_id": "1-0"})
        await receiver.wait_for(lambda r: r.ids() == ["e7"])
        got = receiver.received[0]
        assert got.headers["Mesh-Delivery-Id"].startswith("sub-1/redeliver/")
        await until(lambda: redis_client.xpending(keys.redeliver("sub-1"), "sub-1")["pending"] == 0,
                    "the redelivered event acknowledged")
        await asyncio.sleep(0.3)
        assert other.received == []
    finally:
        await other.stop()


async def test_a_redelivered_event_that_fails_again_is_dead_lettered_again(
        store, receiver, managers, redis_client, keys):
    receiver.respond = statuses([404])
    await managers(config(sub(url=receiver.url)))
    redis_client.xadd(keys.redeliver("sub-1"), {"event": event(7)})
    await until(lambda: len(dead_letters(redis_client, keys)) == 1, "a dead letter")
    assert dead_letters(redis_client, keys)[0]["status"] == "404"
    assert redis_client.xpending(keys.redeliver("sub-1"), "sub-1")["pending"] == 0


async def test_two_runtimes_share_the_work(store, receiver, managers):
    async def slow(received, request):
        await asyncio.sleep(0.005)

    receiver.respond = slow
    doc = config(sub(url=receiver.url, max_in_flight=4))
    await managers(doc, consumer="rt-a")
    await managers(doc, consumer="rt-b")
    await publish(store, 200)
    await receiver.wait_for(lambda r: len(set(r.ids())) == 200, timeout=20)
    assert len(receiver.ids()) == 200  # no duplicates without a crash
    by_runtime = {}
    for received in receiver.received:
        by_runtime[received.headers["User-Agent"]] = by_runtime.get(received.headers["User-Agent"], 0) + 1
    assert set(by_runtime) == {"rt-a", "rt-b"}, by_runtime


# -- shutdown and gauges -----------------------------------------------------------------------


async def test_stop_lets_attempts_under_way_finish_and_acknowledges_them(
        store, receiver, managers, redis_client, keys):
    async def slow(received, request):
        await asyncio.sleep(0.3)

    receiver.respond = slow
    manager = await managers(config(sub(url=receiver.url, max_in_flight=5)))
    await publish(store, 5)
    await until(lambda: receiver.concurrent == 5, "five deliveries under way")
    await manager.stop()
    assert len(receiver.ids()) == 5
    assert redis_client.xpending(keys.topic(TOPIC), "sub-1")["pending"] == 0


async def test_lag_and_pending_gauges(store, receiver, managers):
    gate = hold_answers(receiver)
    manager = await managers(config(sub(url=receiver.url, max_in_flight=2)))
    await publish(store, 10)
    # pending: 2 in flight and 2 read ahead of the next free slots (worker._take_new)
    await until(lambda: sample(manager, "meshruntime_consumer_pending", subscription="sub-1") == 4
                and sample(manager, "meshruntime_consumer_lag", subscription="sub-1") == 6,
                "4 pending and a lag of 6 in the metrics of sub-1")
    gate.set()
    await until(lambda: sample(manager, "meshruntime_consumer_pending", subscription="sub-1") == 0
                and sample(manager, "meshruntime_consumer_lag", subscription="sub-1") == 0,
                "nothing pending and no lag in the metrics of sub-1")


# -- operator actions (the portal's side: meshruntime.delivery_admin) ----------------------


@pytest.fixture
def ops(redis_client, key_prefix) -> DeliveryOperations:
    return DeliveryOperations(redis_client, key_prefix)


async def test_dead_letters_are_listed_newest_first_with_their_reason(store, receiver, managers, ops):
    receiver.respond = statuses([422, 422, 422])
    await managers(config(sub(url=receiver.url, max_in_flight=1)))
    await publish(store, 3)
    await until(lambda: len(ops.dead_letters("sub-1")) == 3, "three dead letters")
    letters = ops.dead_letters("sub-1")
    assert [d.event_id for d in letters] == ["e2", "e1", "e0"]
    assert letters[0].status == 422 and letters[0].attempts == 1 and letters[0].reason_code == "rejected"
    assert letters[0].attributes["type"] == "com.example.order.created" and "data" not in letters[0].attributes
    assert [d.event_id for d in ops.dead_letters("sub-1", count=1, before=letters[0].id)] == ["e1"]
    assert ops.dead_letter("sub-1", letters[1].id).event_id == "e1"
    assert ops.dead_letter("sub-1", "1-1") is None


async def test_redeliver_one_puts_back_that_event_only(store, receiver, managers, ops):
    receiver.respond = statuses([400])
    await managers(config(sub(url=receiver.url, max_in_flight=1)))
    await publish(store, 2)
    await until(lambda: len(ops.dead_letters("sub-1")) == 2, "two dead letters")
    e1 = next(d for d in ops.dead_letters("sub-1") if d.event_id == "e1")
    assert ops.redeliver("sub-1", [e1.id], by="alice") == 1
    assert ops.redeliver("sub-1", [e1.id], by="bob") == 0  # already put back: not twice
    await receiver.wait_for(lambda r: r.ids() == ["e1"])
    assert [d.event_id for d in ops.dead_letters("sub-1")] == ["e0"]


async def test_redeliver_all_for_one_subscription_leaves_the_others_alone(
        store, receiver, managers, ops, redis_client, keys):
    other = await Receiver(secret="whsec-sub-2-0123456789abcdef").start()
    try:
        receiver.respond = statuses([400])
        await managers(config(sub("sub-1", receiver.url), sub("sub-2", other.url)), application=None)
        await publish(store, 600)
        await until(lambda: len(ops.dead_letters("sub-1", count=1000)) == 600 and len(other.ids()) == 600,
                    "600 dead letters and 600 deliveries to the other receiver", timeout=20)
        assert ops.redeliver("sub-1", None, by="alice") == 600
        await receiver.wait_for(lambda r: len(r.ids()) == 600, timeout=20)
        assert sorted(receiver.ids(), key=lambda i: int(i[1:])) == [f"e{i}" for i in range(600)]
        assert ops.dead_letters("sub-1") == []
        assert len(other.ids()) == 600  # sub-2 saw each event once, and none again
        fields = redis_client.xrange(keys.redeliver("sub-1"), count=1)[0][1]
        assert fields[b"by"] == b"alice" and fields[b"dlq_id"]
    finally:
        await other.stop()


async def test_skip_to_now_drops_the_backlog_and_keeps_delivering_new_events(
        store, receiver, managers, ops, redis_client, key_prefix):
    manager = await managers(config(sub(url=receiver.url, state="paused")))
    await publish(store, 50)
    state = ops.state("sub-1", TOPIC)
    assert state.group_exists and state.lag == 50 and state.pending == 0
    result = ops.skip_to_now("sub-1", TOPIC)
    assert result.skipped == 50 and result.acknowledged == 0
    assert ops.state("sub-1", TOPIC).lag == 0
    manager.apply_config(config(sub(url=receiver.url), version=2))
    await publish(store, 2, start=100)
    await receiver.wait_for(lambda r: r.ids() == ["e100", "e101"])


async def test_skip_to_now_acknowledges_what_is_pending(store, receiver, managers, ops, redis_client, keys):
    key = keys.topic(TOPIC)
    await managers(config(sub(url=receiver.url, state="paused")))
    await store.append_many([AppendEntry(TOPIC, event(i)) for i in range(3)])
    redis_client.xreadgroup("sub-1", "rt-dead", {key: ">"}, count=3)
    assert ops.skip_to_now("sub-1", TOPIC).acknowledged == 3
    assert redis_client.xpending(key, "sub-1")["pending"] == 0


async def test_the_state_shows_totals_rate_and_last_error(store, receiver, managers, ops):
    async def answer(received, request):
        return web.Response(status=400, text="no such order") if received.event_id == "e3" else None

    receiver.respond = answer
    manager = await managers(config(sub(url=receiver.url)))
    await publish(store, 5)
    await receiver.wait_for(lambda r: len(r.answered) == 5)
    await until(lambda: ops.state("sub-1", TOPIC).dead_letters == 1, "a dead letter in the state of sub-1")
    await manager.write_status(list(manager.workers.values()))
    state = ops.state("sub-1", TOPIC)
    assert (state.delivered, state.dead_lettered, state.dead_letters) == (4, 1, 1)
    assert state.rate_per_second > 0
    assert state.last_error.startswith("rejected: HTTP 400: no such order") and state.last_error_status == 400
    assert state.last_error_at is not None and state.last_delivered_at is not None
    assert state.lag == 0 and state.pending == 0 and state.consumers == 1


def test_the_state_of_a_subscription_without_a_group(ops):
    state = ops.state("sub-9", TOPIC)
    assert not state.group_exists and state.lag is None and state.dead_letters == 0 and state.delivered == 0
    assert ops.skip_to_now("sub-9", TOPIC).acknowledged == 0



# -- ordered delivery across runtimes ------------------------------------------------------------


async def test_an_ordered_subscription_is_delivered_by_one_runtime_at_a_time_in_order(
        store, receiver, managers, redis_client, keys):
    doc = config(sub(url=receiver.url, max_in_flight=1))
    first = await managers(doc, consumer="rt-a")
    await managers(doc, consumer="rt-b")
    await publish(store, 40)
    await receiver.wait_for(lambda r: len(r.ids()) == 40)
    assert receiver.ids() == [f"e{i}" for i in range(40)] and receiver.max_concurrent == 1
    assert {r.headers["User-Agent"] for r in receiver.received} == {"rt-a"}  # the first took the lease
    assert redis_client.get(keys.delivery_lock("sub-1")) == b"rt-a"
    await first.stop()  # releases the lease: the other runtime takes over
    await publish(store, 20, start=40)
    await receiver.wait_for(lambda r: len(r.ids()) == 60, timeout=10)
    assert receiver.ids() == [f"e{i}" for i in range(60)]
    assert {r.headers["User-Agent"] for r in receiver.received[40:]} == {"rt-b"}


async def test_when_the_ordered_runtime_dies_the_other_takes_over_its_pending_events_in_order(
        store, receiver, managers, redis_client, keys):
    key = keys.topic(TOPIC)
    redis_client.xgroup_create(key, "sub-1", id="0", mkstream=True)
    await publish(store, 10)
    # a runtime took the lease and five events, then died: lease and entries are left behind
    redis_client.set(keys.delivery_lock("sub-1"), "rt-dead", px=int(FAST.visibility_timeout_s * 1000))
    redis_client.xreadgroup("sub-1", "rt-dead", {key: ">"}, count=5)
    await managers(config(sub(url=receiver.url, max_in_flight=1)), consumer="rt-live")
    await receiver.wait_for(lambda r: len(r.ids()) == 10, timeout=10)
    assert receiver.ids() == [f"e{i}" for i in range(10)]


# -- read-ahead and the task-less first attempt (worker._take_new, worker._start_first_attempt) --


async def test_nothing_is_acknowledged_before_its_2xx_and_acks_of_many_events_share_writes(
        store, receiver, managers, redis_client, keys):
    gate = hold_answers(receiver)
    manager = await managers(config(sub(url=receiver.url, max_in_flight=8)))
    await publish(store, 8)
    await until(lambda: receiver.concurrent == 8, "eight deliveries under way")
    await asyncio.sleep(3 * FAST.block_ms / 1000)  # well past the ack flush delay
    assert redis_client.xpending(keys.topic(TOPIC), "sub-1")["pending"] == 8
    acks = []
    worker = manager.workers["sub-1"]
    ack = worker.consumer.ack

    async def counted(held):
        acks.append([h.entry.id for h in held])
        await ack(held)

    worker.consumer.ack = counted
    gate.set()
    await until(lambda: redis_client.xpending(keys.topic(TOPIC), "sub-1")["pending"] == 0,
                "every event of sub-1 acknowledged")
    assert sorted(i for ids in acks for i in ids) == sorted(
        e.decode() for e, _ in redis_client.xrange(keys.topic(TOPIC)))
    assert len(acks) < 8  # batched: answers within the flush delay share one XACK


async def test_events_read_ahead_wait_out_a_pause_and_are_delivered_once_on_resume(
        store, receiver, managers, redis_client, keys):
    gate = asyncio.Event()

    async def held(received, request):
        if received.event_id in ("e0", "e1"):
            await gate.wait()

    receiver.respond = held
    manager = await managers(config(sub(url=receiver.url, max_in_flight=2)))
    await publish(store, 6)
    await until(lambda: receiver.concurrent == 2 and manager.workers["sub-1"].held == 4,
                "two deliveries under way and two events read ahead")
    manager.apply_config(config(sub(url=receiver.url, max_in_flight=2, state="paused"), version=2))
    await manager.reconciled()
    gate.set()
    await receiver.wait_for(lambda r: len(r.answered) == 2)
    await asyncio.sleep(0.5)  # paused: the events read ahead stay pending, undelivered
    assert sorted(receiver.ids()) == ["e0", "e1"]
    assert redis_client.xpending(keys.topic(TOPIC), "sub-1")["pending"] == 2
    manager.apply_config(config(sub(url=receiver.url, max_in_flight=2), version=3))
    await receiver.wait_for(lambda r: len(r.ids()) == 6)
    await asyncio.sleep(0.3)
    assert sorted(receiver.ids()) == [f"e{i}" for i in range(6)]  # each once
    await until(lambda: redis_client.xpending(keys.topic(TOPIC), "sub-1")["pending"] == 0,
                "every event of sub-1 acknowledged")


async def test_a_second_runtime_never_takes_over_events_read_ahead(store, receiver, managers):
    # rt-a's two slots are busy for 3 visibility timeouts; what it read ahead keeps its lease
    async def slow(received, request):
        if received.event_id in ("e0", "e1"):
            await asyncio.sleep(3 * FAST.visibility_timeout_s)

    receiver.respond = slow
    doc = config(sub(url=receiver.url, max_in_flight=2, timeout_ms=10_000))
    first = await managers(doc, consumer="rt-a")
    await publish(store, 4)
    await until(lambda: receiver.concurrent == 2 and first.workers["sub-1"].held == 4,
                "two deliveries under way and two events read ahead")
    await managers(doc, consumer="rt-b")
    await receiver.wait_for(lambda r: len(r.answered) == 4, timeout=10)
    await asyncio.sleep(2 * FAST.visibility_timeout_s)
    assert sorted(receiver.ids()) == ["e0", "e1", "e2", "e3"]  # none twice
    assert {r.headers["User-Agent"] for r in receiver.received} == {"rt-a"}


async def test_an_event_whose_ack_never_lands_stays_pending_and_is_delivered_again(
        store, receiver, managers, redis_client, keys):
    key = keys.topic(TOPIC)
    doc = config(sub(url=receiver.url))
    first = await managers(doc, consumer="rt-a")
    never = asyncio.Event()

    async def frozen(*args, **kwargs):  # the runtime dies between the subscriber's 2xx and its XACK
        await never.wait()

    async def dead(*args, **kwargs):  # ... and claims nothing any more
        return None

    first.workers["sub-1"].consumer.ack = frozen
    first.workers["sub-1"]._claim_stale = dead  # noqa: SLF001
    try:
        await publish(store, 1)
        await receiver.wait_for(lambda r: r.ids() == ["e0"])
        await asyncio.sleep(0.2)
        assert redis_client.xpending(key, "sub-1")["pending"] == 1
        await managers(doc, consumer="rt-b")  # takes it over after the visibility timeout
        await receiver.wait_for(lambda r: r.ids() == ["e0", "e0"], timeout=10)
        await until(lambda: redis_client.xpending(key, "sub-1")["pending"] == 0, "every event of sub-1 acknowledged")
    finally:
        never.set()


async def test_an_event_whose_ack_is_given_up_is_delivered_again_by_the_same_runtime(
        store, receiver, managers, redis_client, keys):
    from dataclasses import replace

    from meshruntime.store import StoreError

    manager = await managers(config(sub(url=receiver.url)), settings=replace(FAST, ack_retries=1))
    worker = manager.workers["sub-1"]
    ack, failed = worker.consumer.ack, []

    async def failing_twice(held):  # a first write and its one retry fail: the ack is given up
        if len(failed) < 2:
            failed.append([h.entry.id for h in held])
            raise StoreError("ack failed: Redis is away")
        await ack(held)

    worker.consumer.ack = failing_twice
    await publish(store, 1)
    await receiver.wait_for(lambda r: r.ids() == ["e0", "e0"], timeout=10)  # after the visibility timeout
    await until(lambda: redis_client.xpending(keys.topic(TOPIC), "sub-1")["pending"] == 0,
                "every event of sub-1 acknowledged")
    assert len(failed) == 2
