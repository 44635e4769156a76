"""Subscribe rules hold delivery: a subscription whose application the access policy does not let
subscribe to its topic reads nothing (its events stay in the store, its group keeps its position,
its lag grows), says why in its status record, its metrics and the heartbeat, and resumes from
where it stopped once a document allows it again.

Real Redis, a real webhook receiver, the delivery engine in process, in a whole runtime (publish
over HTTP, heartbeats) and in its child process.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from delivery_harness import TOPIC, event, group_row, publish, sample
from factories import access_rule, make_config, subscription
from runtime_harness import event as http_event
from runtime_harness import running_runtime

from meshruntime.delivery import DeliverySettings
from meshruntime.delivery.process import DeliveryProcess
from meshruntime.delivery.spec import specs_from_config
from meshruntime.delivery_admin import DeliveryOperations
from meshruntime.demo.receiver import Receiver
from meshruntime.keys import KeySpace
from meshruntime.state import MeshState
from meshruntime.store import AppendEntry
from tests.portal_support.waiting import until

FAST = DeliverySettings(visibility_timeout_s=1.0, block_ms=100, redeliver_poll_s=0.1, metrics_interval_s=0.2,
                        status_interval_s=0.2)
DENY = access_rule("rule-9", "*", "orders.*", ["subscribe"], effect="deny", description="orders are private")
HELD = "subscribe denied by rule rule-9 (deny orders.*)"


def sub(id: str, url: str = "http://127.0.0.1:9/", *, app: str = "shipping", topic: str = TOPIC,
        **delivery: Any) -> dict[str, Any]:
    return subscription(id, topic, app, delivery={"url": url, "timeout_ms": 2000, "max_attempts": 4,
                                                  "backoff_base_ms": 20, "backoff_cap_ms": 200, **delivery})


def config(*subs, version: int = 1, rules=(), **kwargs):
    return make_config(bare=True, version=version, topics=[TOPIC, "orders.shipped", "audit.orders"],
                       applications=["shipping", "billing", "auditor"], access_rules=list(rules),
                       subscriptions=list(subs), **kwargs)


def status(redis_client, keys: KeySpace, sub_id: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.delivery(sub_id)).items()}


async def test_a_deny_subscribe_rule_holds_delivery_until_the_rule_changes(store, managers, redis_client, keys,
                                                                         key_prefix):
    receiver = await Receiver().start()
    try:
        held, control = sub("sub-1", receiver.url), sub("sub-2", receiver.url, topic="audit.orders", app="auditor")
        manager = await managers(config(held, control, rules=[DENY]), application=None, settings=FAST)
        assert manager.held == {"sub-1": HELD}
        await publish(store, 5)
        await publish(store, 5, topic="audit.orders")
        # the same engine delivers the other subscription meanwhile: by the time it has all of its
        # events, the held one has read none of its own
        await receiver.wait_for(lambda r: len([x for x in r.received if x.subscription == "sub-2"]) == 5)
        assert [x for x in receiver.received if x.subscription == "sub-1"] == []
        row = group_row(redis_client, keys, "sub-1")
        assert row is not None and row["lag"] == 5 and row["pending"] == 0  # the position is kept
        await until(lambda: status(redis_client, keys, "sub-1").get("held") == HELD, "sub-1 held in its status record")
        assert "held" not in status(redis_client, keys, "sub-2")
        assert sample(manager, "meshruntime_delivery_held", subscription="sub-1") == 1
        assert manager.counters()["subscriptions_held"] == 1
        await until(lambda: sample(manager, "meshruntime_consumer_lag", subscription="sub-1") == 5,
                    "the lag metric of sub-1 at 5")
        state = DeliveryOperations(redis_client, key_prefix).state("sub-1", TOPIC)  # what the portal reads
        assert state.held == HELD and state.held_since is not None and state.lag == 5

        await publish(store, 2, start=5)  # more wait, in order
        await until(lambda: sample(manager, "meshruntime_consumer_lag", subscription="sub-1") == 7,
                    "the lag metric of sub-1 at 7")

        manager.apply_config(config(held, control, version=2))  # the rule is gone: resume
        await manager.reconciled()
        await receiver.wait_for(lambda r: len([x for x in r.received if x.subscription == "sub-1"]) == 7)
        assert [x.event_id for x in receiver.received if x.subscription == "sub-1"] == [f"e{i}" for i in range(7)]
        await until(lambda: "held" not in status(redis_client, keys, "sub-1"),
                    "the hold gone from the status record of sub-1")
        assert "held_since" not in status(redis_client, keys, "sub-1")
        assert sample(manager, "meshruntime_delivery_held", subscription="sub-1") == 0
        assert manager.held == {} and "subscriptions_held" not in manager.counters()
    finally:
        await receiver.stop()


async def test_the_loss_of_the_allow_holds_delivery_too(store, managers, redis_client, keys):
    receiver = await Receiver().start()
    try:
        manager = await managers(config(sub("sub-1", receiver.url), grant_subscriptions=False), settings=FAST)
        assert manager.held == {"sub-1": "subscribe denied: no access rule allows it (default deny)"}
        await until(lambda: status(redis_client, keys, "sub-1").get("held", "").endswith("(default deny)"),
                    "sub-1 held in its status record for want of an allow")
        await publish(store, 3)
        await until(lambda: sample(manager, "meshruntime_consumer_lag", subscription="sub-1") == 3,
                    "the lag metric of sub-1 at 3")
        assert receiver.received == []
        manager.apply_config(config(sub("sub-1", receiver.url), version=2,
                                    rules=[access_rule("rule-1", ["shipping"], "orders.*", ["subscribe"])]))
        await receiver.wait_for(lambda r: len(r.received) == 3)
    finally:
        await receiver.stop()


async def test_a_subscription_denied_mid_stream_lets_the_attempt_under_way_finish_and_reads_no_more(
        store, managers, redis_client, keys):
    gate, started = asyncio.Event(), asyncio.Event()

    async def slow(received, request):
        started.set()
        await gate.wait()

    receiver = await Receiver(respond=slow).start()
    try:
        manager = await managers(config(sub("sub-1", receiver.url, max_in_flight=1)), settings=FAST)
        await publish(store, 4)
        await asyncio.wait_for(started.wait(), 10)  # e0 under way
        manager.apply_config(config(sub("sub-1", receiver.url, max_in_flight=1), version=2, rules=[DENY]))
        await manager.reconciled()
        gate.set()
        await until(lambda: redis_client.xpending(keys.topic(TOPIC), "sub-1")["pending"] == 0,
                    "every event of sub-1 acknowledged")
        await until(lambda: status(redis_client, keys, "sub-1").get("held") == HELD, "sub-1 held in its status record")
        await until(lambda: sample(manager, "meshruntime_consumer_lag", subscription="sub-1") == 3,
                    "the lag metric of sub-1 at 3")
        assert receiver.ids() == ["e0"]
    finally:
        await receiver.stop()


async def test_a_runtime_holds_what_its_policy_denies_and_its_heartbeat_says_why(redis_url, key_prefix,
                                                                                redis_client, keys):
    receiver = await Receiver().start()
    subscriptions = [subscription("sub-1", TOPIC, "shipping", delivery={"url": receiver.url})]
    first = make_config(subscriptions=subscriptions,
                        access_rules=[*make_config()["access_rules"][:3], DENY])
    try:
        async with running_runtime(redis_url, key_prefix, doc=first, application=None,
                                   heartbeat_interval=0.1) as h:
            await h.runtime.delivery.reconciled()
            assert (await h.publish(TOPIC, http_event(1))).status == 202  # publishing is not subscribing

            def beat() -> dict[str, str]:
                entries = redis_client.xrevrange(keys.runtimes, count=1)
                return {k.decode(): v.decode() for k, v in entries[0][1].items()} if entries else {}

            await until(lambda: orjson.loads(beat().get("held", "{}")) == {"sub-1": HELD},
                        "a heartbeat that names sub-1 held")
            assert orjson.loads(beat()["counters"])["subscriptions_held"] == 1
            await until(lambda: status(redis_client, keys, "sub-1").get("held") == HELD,
                        "sub-1 held in its status record")
            await until(lambda: (group_row(redis_client, keys, "sub-1") or {}).get("lag") == 1,
                        "a lag of 1 in the group of sub-1")
            assert receiver.received == []
            metrics = await (await h.client.get("/metrics")).text()
            assert 'meshruntime_delivery_held{subscription="sub-1"} 1.0' in metrics

            h.runtime.apply_config(make_config(version=2, subscriptions=subscriptions))
            await receiver.wait_for(lambda r: r.ids() == ["evt-1"])
            await until(lambda: orjson.loads(beat().get("held", "{}")) == {}, "a heartbeat that names nothing held")
    finally:
        await receiver.stop()


async def test_the_delivery_process_holds_what_the_runtime_policy_denies(redis_url, key_prefix, store,
                                                                        redis_client, keys):
    receiver = await Receiver().start()
    child = DeliveryProcess(connections={"default": redis_url}, mesh_url=redis_url, prefix=key_prefix,
                            consumer="rt-child", application=None,
                            settings=DeliverySettings(visibility_timeout_s=5), journey_sample_rate=0,
                            journey_ttl_seconds=60, user_agent="rt-child")
    doc = config(sub("sub-1", receiver.url), rules=[DENY])
    try:
        child.apply_config(doc)  # no policy given: the document's own rules decide
        assert child.held == {"sub-1": HELD}
        await child.start()
        await until(lambda: status(redis_client, keys, "sub-1").get("held") == HELD, "sub-1 held in its status record")
        await store.append_many([AppendEntry(TOPIC, event(i)) for i in range(2)])
        await until(lambda: (group_row(redis_client, keys, "sub-1") or {}).get("lag") == 2,
                    "a lag of 2 in the group of sub-1")
        assert receiver.received == []
        child.apply_config(config(sub("sub-1", receiver.url), version=2))
        await receiver.wait_for(lambda r: len(r.received) == 2)
        await until(lambda: "held" not in status(redis_client, keys, "sub-1"),
                    "the hold gone from the status record of sub-1")
    finally:
        await child.stop()
        await receiver.stop()


def test_holds_come_from_the_same_cached_evaluator_as_publishing():
    doc = config(sub("sub-1"), sub("sub-2", topic="audit.orders", app="auditor"), rules=[DENY])
    state = MeshState.build(doc)
    before = state.policy.cached_decisions
    specs = specs_from_config(doc, None, policy=state.policy)
    assert specs["sub-1"].held == HELD and not specs["sub-1"].delivering and specs["sub-1"].active
    assert specs["sub-2"].held is None and specs["sub-2"].delivering
    assert state.policy.cached_decisions == before + 2  # decided once per subscription, then cached
