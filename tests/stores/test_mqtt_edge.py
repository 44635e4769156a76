"""MQTT at the mesh's edge, against the machine's Mosquitto: devices publish into topics through
the runtime's ingest (the checks of an HTTP publish, then the topic's store), and a subscription
delivers to an MQTT topic."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import aiohttp
import aiomqtt
import orjson
import pytest

from meshruntime.app import Runtime, Settings
from meshruntime.config import seal
from meshruntime.keys import KeySpace
from meshruntime.store import names
from tests.portal_support.waiting import until, until_awaited

from .conftest import MQTT_URL, WAIT_S, engine_url

KEY = "mk_k7mqtt00_" + "B" * 40
SCHEMA = {"type": "object", "required": ["celsius"], "properties": {"celsius": {"type": "number"}}}


def topic(name: str, store: str = "main", schema: Any = None) -> dict[str, Any]:
    return {"name": name, "store": store, "lifecycle": "active", "sunset": None, "schema": schema,
            "retention": {"max_age_seconds": None, "max_length": None}}


def config(*, readings_store: str = "main", subscriptions: list | None = None, rules: list | None = None,
           version: int = 1) -> dict[str, Any]:
    doc = {
        "format": 1,
        "stores": [{"name": "main", "kind": "redis", "connection": "default"},
                   {"name": "devices", "kind": "mqtt", "connection": "devices"},
                   {"name": "far", "kind": "nats", "connection": "far"}],
        "topics": [topic("sensors.temperature", schema=SCHEMA), topic("readings.raw", readings_store),
                   topic("billing.secret"), topic("audit.sensors")],
        "applications": [
            {"name": "sensors", "team": "iot",
             "keys": [{"prefix": "k7mqtt00", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "expires_at": None}]},
            {"name": "dashboard", "team": "iot", "keys": []},
        ],
        "access_rules": [
            {"id": "rule-1", "principals": ["sensors"], "topic": "sensors.*", "actions": ["publish"], "effect": "allow",
             "description": ""},
            {"id": "rule-2", "principals": ["sensors"], "topic": "readings.*", "actions": ["publish"],
             "effect": "allow", "description": ""},
            *[{"id": s["id"], "principals": ["dashboard"], "topic": s["topic"], "actions": ["subscribe"],
               "effect": "allow", "description": ""} for s in subscriptions or ()],
            *(rules or ()),
        ],
        "subscriptions": subscriptions or [],
        "routing_rules": [{"id": "route-1", "source": "sensors.temperature", "filters": [],
                           "targets": ["audit.sensors"], "order": 10}],
    }
    return seal(doc, version)


@pytest.fixture
def mqtt(prefix, request) -> tuple[str, str]:
    """The machine's broker, and a root of this test's own in its topic tree."""
    engine_url("mqtt", request)  # fails, saying so, when the broker does not answer
    root = f"{names.prefix_token(prefix)}-edge"
    return f"{MQTT_URL}/{root}", root


@pytest.fixture
async def runtimes(redis_url, prefix, mqtt):
    made: list[Runtime] = []

    async def start(doc: dict[str, Any], *, stores: dict[str, str] | None = None, **settings: Any) -> Runtime:
        runtime = Runtime(Settings(store_url=redis_url, prefix=prefix, runtime_id=f"rt-{prefix[:-1]}",
                                   stores={"devices": mqtt[0], **(stores or {})},
                                   mqtt_ingest=[("devices", "sensors")], **settings))
        made.append(runtime)
        runtime.apply_config(doc)
        await runtime.start()
        return runtime

    yield start
    for runtime in made:
        if not runtime.stopping:
            await runtime.stop()


async def device_publish(root: str, messages: list[tuple[str, bytes]]) -> None:
    host, port = MQTT_URL.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as client:
        for mqtt_topic, payload in messages:
            await client.publish(f"{root}/{mqtt_topic}", payload, qos=1)


def stored(runtime: Runtime, topic_name: str):
    return runtime.stores.store_for(topic_name).read_range(topic_name, count=100)


async def test_device_messages_go_through_access_schema_and_routing_into_the_topics_store(runtimes, mqtt, prefix):
    _url, root = mqtt
    runtime = await runtimes(config())
    [ingestor] = runtime.ingestors
    await until(lambda: ingestor.error is None and ingestor._task is not None, "the ingest to run", WAIT_S)
    structured = {"specversion": "1.0", "id": "t-1", "source": "/device/7", "type": "temperature",
                  "datacontenttype": "application/json", "data": {"celsius": 21.5}}
    await device_publish(root, [
        ("sensors/temperature", orjson.dumps(structured)),  # a CloudEvent: stored, and routed
        ("sensors/temperature", orjson.dumps({**structured, "id": "t-2", "data": {"celsius": "hot"}})),  # schema
        ("readings/raw", b'{"v": 1}'),  # plain JSON: wrapped in a CloudEvent
        ("billing/secret", b'{"v": 2}'),  # no access rule lets "sensors" publish there
        ("Bad Name/x", b"{}"),  # names no mesh topic
    ])
    await until(lambda: ingestor.ingested + ingestor.refused == 5, "five messages dealt with", WAIT_S)
    assert (ingestor.ingested, ingestor.refused) == (2, 3)
    [temperature] = await stored(runtime, "sensors.temperature")
    assert orjson.loads(temperature.event)["data"] == {"celsius": 21.5}
    [copy] = await stored(runtime, "audit.sensors")
    assert orjson.loads(copy.event)["meshroute"] == "route-1"
    [raw] = await stored(runtime, "readings.raw")
    wrapped = orjson.loads(raw.event)
    assert wrapped["type"] == "mqtt.message" and wrapped["data"] == {"v": 1}
    assert wrapped["source"] == f"mqtt://devices/{root}/readings/raw"
    assert await stored(runtime, "billing.secret") == []
    journey = await runtime.mesh_redis.lrange(KeySpace(prefix).journey("t-2"), 0, -1)
    assert [orjson.loads(s)["reason"] for s in journey] == ["schema_mismatch"]


async def test_a_message_whose_store_cannot_take_it_is_not_acknowledged_and_comes_again(
        runtimes, mqtt, redis_url, request):
    _url, root = mqtt
    first = await runtimes(config())
    [ingestor] = first.ingestors
    await until(lambda: ingestor.error is None and ingestor._task is not None, "the ingest to run", WAIT_S)
    # readings.raw moves to a store this runtime has no connection for: its messages wait
    first.apply_config(config(readings_store="far", version=2))
    await device_publish(root, [("readings/raw", b'{"v": 7}')])
    await until(lambda: ingestor.error is not None and "not stored yet" in ingestor.error,
                "the message to wait for its store", WAIT_S)
    await first.stop()  # never acknowledged: the broker keeps it for the runtime's session
    nats_url = engine_url("nats", request)
    second = await runtimes(config(readings_store="far", version=2), stores={"far": nats_url})
    await until(lambda: second.ingestors[0].ingested == 1, "the message to come again", WAIT_S)
    [raw] = await stored(second, "readings.raw")
    assert orjson.loads(raw.event)["data"] == {"v": 7}


def mqtt_subscription(id: str, topic_name: str, target: str) -> dict[str, Any]:
    return {"id": id, "topic": topic_name, "application": "dashboard", "state": "active",
            "delivery": {"url": f"mqtt://devices/{target}", "mode": "structured", "timeout_ms": 5000,
                         "max_attempts": 5, "backoff_base_ms": 50, "backoff_cap_ms": 500, "max_in_flight": 4},
            "filters": [], "secret": "whsec-sub-1-0123456789abcdef"}


async def publish_readings(address: str, port: int) -> None:
    """Three temperature readings (a0, a1, a2), one batch through the runtime's HTTP publish."""
    events = [{"specversion": "1.0", "id": f"a{i}", "source": "/s", "type": "temperature",
               "datacontenttype": "application/json", "data": {"celsius": i}} for i in range(3)]
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"http://{address}:{port}/v1/topics/sensors.temperature/events",
                                      data=orjson.dumps(events),
                                      headers={"Authorization": f"Bearer {KEY}",
                                               "Content-Type": "application/cloudevents-batch+json"})
        assert response.status == 202


async def test_a_subscription_delivers_to_an_mqtt_topic(runtimes, mqtt):
    _url, root = mqtt
    target = f"{root}/out/alerts"
    subscription = mqtt_subscription("sub-1", "sensors.temperature", target)
    host, port = MQTT_URL.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as device:
        await device.subscribe(target, qos=1)
        runtime = await runtimes(config(subscriptions=[subscription]))
        server = runtime.make_server()
        address, server_port = await server.start("127.0.0.1", 0)
        try:
            await publish_readings(address, server_port)
            got = []
            async with asyncio.timeout(30):
                async for message in device.messages:
                    got.append(orjson.loads(message.payload))
                    if len(got) == 3:
                        break
            assert sorted(e["id"] for e in got) == ["a0", "a1", "a2"]
            assert {e["type"] for e in got} == {"temperature"}  # the whole CloudEvent, structured
            store = runtime.stores.store_for("sensors.temperature")
            await until_awaited(lambda: _acked(store), "the deliveries to be acknowledged", WAIT_S)
        finally:
            await server.shutdown()


async def test_a_subscription_to_an_mqtt_topic_is_held_by_a_deny_rule_and_resumes_when_it_goes(
        runtimes, mqtt, prefix):
    """No topic lives on MQTT (docs/stores.md): the held events wait in their topic's store, and
    the MQTT target gets them once the rule goes, as a webhook would."""
    _url, root = mqtt
    alerts, audit = f"{root}/out/alerts", f"{root}/out/audit"
    # sub-2 gets the routed copies of the same events: the sync point for "nothing was sent"
    subscriptions = [mqtt_subscription("sub-1", "sensors.temperature", alerts),
                     mqtt_subscription("sub-2", "audit.sensors", audit)]
    deny = {"id": "rule-9", "principals": ["dashboard"], "topic": "sensors.*", "actions": ["subscribe"],
            "effect": "deny", "description": "readings are private"}
    host, port = MQTT_URL.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as device:
        await device.subscribe(f"{root}/out/#", qos=1)
        runtime = await runtimes(config(subscriptions=subscriptions, rules=[deny]))
        held = "subscribe denied by rule rule-9 (deny sensors.*)"
        assert runtime.delivery.held == {"sub-1": held}
        server = runtime.make_server()
        address, server_port = await server.start("127.0.0.1", 0)
        got: dict[str, list[str]] = {alerts: [], audit: []}
        try:
            await publish_readings(address, server_port)
            await _receive(device, got, lambda: len(got[audit]) == 3)
            assert got[alerts] == []
            store = runtime.stores.store_for("sensors.temperature")
            await until_awaited(lambda: _lag(store, 3), "a lag of the 3 events held", WAIT_S)
            status = KeySpace(prefix).delivery("sub-1")
            await until_awaited(lambda: runtime.mesh_redis.hget(status, "held"), "the status record's hold", WAIT_S)
            assert (await runtime.mesh_redis.hget(status, "held")).decode() == held

            runtime.apply_config(config(subscriptions=subscriptions, version=2))
            await _receive(device, got, lambda: len(set(got[alerts])) == 3)
            assert sorted(set(got[alerts])) == ["a0", "a1", "a2"]
            await until_awaited(lambda: _acked(store), "the deliveries to be acknowledged", WAIT_S)
        finally:
            await server.shutdown()


async def _receive(device: aiomqtt.Client, got: dict[str, list[str]], enough) -> None:
    """Take messages into ``got`` (event ids by MQTT topic) until ``enough()``."""
    async with asyncio.timeout(30):
        async for message in device.messages:
            got[str(message.topic)].append(orjson.loads(message.payload)["id"])
            if enough():
                return


async def _lag(store, lag: int) -> bool:
    info = await store.group_info("sensors.temperature", "sub-1")
    return info is not None and info.lag == lag and info.pending == 0


async def _acked(store) -> bool:
    info = await store.group_info("sensors.temperature", "sub-1")
    return info is not None and info.lag == 0 and info.pending == 0

