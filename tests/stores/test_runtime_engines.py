"""The runtime over every engine: publish, routing across engines, delivery with its guarantees,
dead letters and redelivery, lag and the journey, through the same code paths as on Redis.

Each test runs a runtime whose mesh (configuration, journeys, leases) is on Redis and whose
topic ``orders.created`` lives on the engine under test, next to ``inbox.received`` on Redis,
with a route from the Redis topic to the other engine's topic.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from meshruntime.app import Runtime, Settings, StoresMissing
from meshruntime.config import seal
from meshruntime.demo.receiver import Receiver
from meshruntime.keys import KeySpace
from meshruntime.store import Store, open_store
from tests.meshruntime.delivery_harness import SECRET, hold_answers
from tests.portal_support.waiting import until, until_awaited

from .conftest import TRAITS, WAIT_S

ROOT = Path(__file__).resolve().parents[2]
SOURCE, TARGET = "inbox.received", "orders.created"
KEY_PREFIX = "k7engine"
KEY = f"mk_{KEY_PREFIX}_" + "A" * 40


def mesh_config(kind: str, receiver_url: str, *, version: int = 1, max_in_flight: int = 3,
                engine: bool = True) -> dict[str, Any]:
    """Topics on Redis and on ``kind``, a route between them, a subscription of the engine's topic
    (``engine=False``: the Redis topic alone)."""
    def topic(name: str, store: str) -> dict[str, Any]:
        return {"name": name, "store": store, "lifecycle": "active", "sunset": None, "schema": None,
                "retention": {"max_age_seconds": None, "max_length": None}}

    doc = {
        "format": 1,
        "stores": [{"name": "main", "kind": "redis", "connection": "default"},
                   {"name": "engine", "kind": kind, "connection": "engine"}],
        "topics": [topic(SOURCE, "main"), topic(TARGET, "engine")],
        "applications": [
            {"name": "billing", "team": "payments",
             "keys": [{"prefix": KEY_PREFIX, "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "expires_at": None}]},
            {"name": "shipping", "team": "logistics", "keys": []},
        ],
        "access_rules": [
            {"id": "rule-1", "principals": ["billing"], "topic": "*", "actions": ["publish"], "effect": "allow",
             "description": ""},
            {"id": "sub-1", "principals": ["shipping"], "topic": TARGET, "actions": ["subscribe"], "effect": "allow",
             "description": ""},
        ],
        "subscriptions": [{
            "id": "sub-1", "topic": TARGET, "application": "shipping", "state": "active",
            "delivery": {"url": receiver_url, "mode": "binary", "timeout_ms": 20_000, "max_attempts": 3,
                         "backoff_base_ms": 50, "backoff_cap_ms": 200, "max_in_flight": max_in_flight},
            "filters": [], "secret": SECRET,
        }],
        "routing_rules": [{"id": "route-1", "source": SOURCE, "filters": [], "targets": [TARGET], "order": 10}],
    }
    if not engine:
        doc["stores"] = doc["stores"][:1]
        doc["topics"] = doc["topics"][:1]
        doc["access_rules"] = doc["access_rules"][:1]
        doc["subscriptions"] = doc["routing_rules"] = []
    return seal(doc, version)


def event(i: int) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"e{i}", "source": "/billing", "type": "com.example.received",
            "datacontenttype": "application/json", "data": {"i": i}}


@pytest.fixture
async def engine(kind, url, prefix) -> Store:
    """The engine under test, as the test itself sees it (reads, dead letters, redelivery)."""
    store = open_store(url, prefix=prefix, name="engine", visibility_timeout_s=TRAITS[kind].visibility_timeout_s)
    await store.connect()
    yield store
    await store.close()


@pytest.fixture
async def runtime(kind, url, prefix, redis_url, receiver):
    made: list[Runtime] = []

    async def start(doc: dict[str, Any] | None = None, *, runtime_id: str = "rt-a", **settings: Any) -> Runtime:
        settings = {"stores": {"engine": url}, **settings}
        runtime = Runtime(Settings(store_url=redis_url, application=None, prefix=prefix, runtime_id=runtime_id,
                                   visibility_timeout=TRAITS[kind].visibility_timeout_s, **settings))
        made.append(runtime)
        runtime.apply_config(doc or mesh_config(kind, receiver.url))
        await runtime.start()
        return runtime

    yield start
    for runtime in made:
        await runtime.stop()


async def serve(runtime: Runtime):
    server = runtime.make_server()
    host, port = await server.start("127.0.0.1", 0)
    return server, f"http://{host}:{port}"


async def publish(base: str, topic: str, events: list[dict[str, Any]]) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{base}/v1/topics/{topic}/events", data=orjson.dumps(events),
                                      headers={"Authorization": f"Bearer {KEY}",
                                               "Content-Type": "application/cloudevents-batch+json"})
        response.body = await response.json()
        return response


async def test_a_copy_routed_from_redis_to_the_engine_is_delivered_once_within_max_in_flight(
        kind, engine, runtime, receiver, redis_url, prefix):
    async def slow(received, request):
        await asyncio.sleep(0.05)

    receiver.respond = slow
    rt = await runtime()
    server, base = await serve(rt)
    try:
        response = await publish(base, SOURCE, [event(i) for i in range(12)])
        assert response.status == 202 and response.body["routed"] == {"route-1": 12}
        # the copies live on the engine, each with the route's extension; the originals on Redis
        stored = await engine.read_range(TARGET, count=100)
        assert sorted(orjson.loads(e.event)["id"] for e in stored) == sorted(f"e{i}" for i in range(12))
        assert {orjson.loads(e.event)["meshroute"] for e in stored} == {"route-1"}
        assert len(await rt.stores.store_for(SOURCE).read_range(SOURCE, count=100)) == 12
        await receiver.wait_for(lambda r: len(r.delivered) == 12, timeout=60)
        assert receiver.bad_signatures == 0
        assert 1 <= receiver.max_concurrent <= 3  # the subscription's max in flight
        # acknowledged after the 2xx: nothing left for the group
        await until_awaited(lambda: _settled(engine), "the group to have nothing left to deliver", WAIT_S)
        # the journey is in the mesh's Redis, whatever the engine
        journey = await rt.mesh_redis.lrange(KeySpace(prefix).journey("e0"), 0, -1)
        assert {"accepted", "routed", "stored", "attempt", "acked"} <= {orjson.loads(step)["step"] for step in journey}
        assert receiver.duplicates == 0
    finally:
        await server.shutdown()


async def _settled(engine: Store) -> bool:
    info = await engine.group_info(TARGET, "sub-1")
    return info is not None and info.lag == 0 and info.pending in (0, None)


async def test_a_rejected_event_is_dead_lettered_on_its_engine_and_redelivered_from_there(
        kind, engine, runtime, receiver):
    answers: dict[str, int] = {}

    async def reject_e3_once(received, request):
        answers[received.event_id] = answers.get(received.event_id, 0) + 1
        if received.event_id == "e3" and answers["e3"] == 1:
            return web.Response(status=404)
        return None

    receiver.respond = reject_e3_once
    rt = await runtime()
    server, base = await serve(rt)
    try:
        assert (await publish(base, TARGET, [event(i) for i in range(5)])).status == 202
        [dead] = await until_awaited(lambda: engine.dead_letters("sub-1"), "a dead letter", WAIT_S)
        assert (dead.status, dead.attempts, orjson.loads(dead.event)["id"]) == (404, 1, "e3")
        assert dead.reason.startswith("rejected:")
        await receiver.wait_for(lambda r: len(r.delivered) == 4, timeout=60)
        assert await engine.redeliver("sub-1", None, by="test") == 1
        await receiver.wait_for(lambda r: "e3" in r.delivered, timeout=60)
        assert await engine.dead_letters("sub-1") == []
        assert receiver.received[-1].headers["Mesh-Delivery-Id"].startswith("sub-1/redeliver/")
    finally:
        await server.shutdown()


DENY = {"id": "rule-9", "principals": ["shipping"], "topic": TARGET, "actions": ["subscribe"], "effect": "deny",
        "description": "orders are private"}
HELD = f"subscribe denied by rule rule-9 (deny {TARGET})"


def audited_config(kind: str, receiver_url: str, audit_url: str, *, version: int, deny: bool) -> dict[str, Any]:
    """``mesh_config`` plus a second subscription of the engine's topic (the auditor's ``sub-2``,
    never held: it shows that the runtime delivers that topic meanwhile), and with ``deny`` the
    rule that denies shipping (``sub-1``) subscribing to it."""
    doc = mesh_config(kind, receiver_url)
    [held] = doc["subscriptions"]
    doc["applications"] = [*doc["applications"], {"name": "auditor", "team": "audit", "keys": []}]
    doc["access_rules"] = [*doc["access_rules"], {**doc["access_rules"][1], "id": "sub-2", "principals": ["auditor"]},
                           *([DENY] if deny else [])]
    doc["subscriptions"] = [held, {**held, "id": "sub-2", "application": "auditor",
                                   "delivery": {**held["delivery"], "url": audit_url}}]
    return seal(doc, version)


async def test_a_subscription_denied_subscribe_is_held_on_its_engine_and_resumes_when_the_rule_goes(
        kind, engine, runtime, receiver, prefix):
    auditor = await Receiver(secret=SECRET).start()
    rt = await runtime(audited_config(kind, receiver.url, auditor.url, version=1, deny=True))
    server, base = await serve(rt)
    status = KeySpace(prefix).delivery("sub-1")
    try:
        assert rt.delivery.held == {"sub-1": HELD}
        assert (await publish(base, TARGET, [event(i) for i in range(5)])).status == 202
        # by the time the auditor's subscription of the same topic has every event, the held one
        # has read none of them: they wait on the engine, the group's position kept
        await auditor.wait_for(lambda r: len(r.delivered) == 5, timeout=60)
        assert receiver.received == []
        await until_awaited(lambda: _lag(engine, 5), "a lag of the 5 events held", WAIT_S)
        assert (await engine.group_info(TARGET, "sub-1")).pending == (0 if TRAITS[kind].knows_pending else None)
        await until_awaited(lambda: _status_says(rt, status, HELD), "the status record to say why it is held", WAIT_S)
        assert await rt.mesh_redis.hget(status, "held_since") is not None

        assert (await publish(base, TARGET, [event(i) for i in range(5, 8)])).status == 202  # more wait
        await until_awaited(lambda: _lag(engine, 8), "the lag to grow to the 8 events published", WAIT_S)
        assert receiver.received == []

        rt.apply_config(audited_config(kind, receiver.url, auditor.url, version=2, deny=False))
        await receiver.wait_for(lambda r: len(r.delivered) == 8, timeout=60)
        assert receiver.delivered == {f"e{i}" for i in range(8)}  # none missing
        await until_awaited(lambda: _settled(engine), "the group to have nothing left to deliver", WAIT_S)
        await until_awaited(lambda: _status_says(rt, status, None), "the status record to drop the hold", WAIT_S)
        assert await rt.mesh_redis.hget(status, "held_since") is None
        assert rt.delivery.held == {}
        assert receiver.duplicates == 0 and receiver.bad_signatures == 0
    finally:
        await server.shutdown()
        await auditor.stop()


async def _lag(engine: Store, lag: int) -> bool:
    info = await engine.group_info(TARGET, "sub-1")
    return info is not None and info.lag == lag


async def _status_says(rt: Runtime, status: str, held: str | None) -> bool:
    value = await rt.mesh_redis.hget(status, "held")
    return (value.decode() if value is not None else None) == held


async def test_a_store_added_later_without_a_connection_gets_503_and_a_heartbeat_line(
        kind, runtime, receiver, redis_url, prefix):
    rt = await runtime(mesh_config(kind, receiver.url, engine=False), stores={})  # no connection "engine"
    rt.apply_config(mesh_config(kind, receiver.url, version=2))  # ... which this document names
    server, base = await serve(rt)
    try:
        response = await publish(base, TARGET, [event(1)])
        assert response.status == 503 and response.body["error"] == "store_not_configured"
        assert "this runtime has no connection 'engine' (start it with --store engine=URL)" in response.body["message"]
        # the route from the Redis topic copies into it: refused whole, nothing stored
        response = await publish(base, SOURCE, [event(2)])
        assert response.status == 503 and response.body["unavailable"] == TARGET
        assert await rt.stores.store_for(SOURCE).read_range(SOURCE) == []
        report = await rt.refresh_store_report()
        assert report["engine"]["state"] == "missing" and report["main"]["state"] == "reachable"
    finally:
        await server.shutdown()


async def test_a_runtime_refuses_to_start_naming_a_store_it_has_no_connection_for(kind, redis_url, prefix, receiver):
    runtime = Runtime(Settings(store_url=redis_url, application=None, prefix=prefix, runtime_id="rt-x"))
    runtime.apply_config(mesh_config(kind, receiver.url))
    with pytest.raises(StoresMissing, match="event store 'engine' .* no connection 'engine'"):
        await runtime.start()


def _runtime_process(kind: str, url: str, redis_url: str, prefix: str, config: Path, runtime_id: str):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "meshruntime", "--gateway", "--listen", "127.0.0.1:0", "--store-url", redis_url,
         "--store", f"engine={url}", "--config-file", str(config), "--prefix", prefix, "--runtime-id", runtime_id,
         "--visibility-timeout", str(TRAITS[kind].visibility_timeout_s), "--log-level", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    assert "listening on http://" in line, line
    return process, line.rsplit("listening on ", 1)[1].strip()


async def test_events_a_killed_runtime_held_are_delivered_by_another(kind, url, redis_url, prefix, receiver, engine,
                                                                    tmp_path):
    release = hold_answers(receiver)
    config = tmp_path / "mesh.json"
    config.write_bytes(orjson.dumps(mesh_config(kind, receiver.url, max_in_flight=2)))
    first, base = _runtime_process(kind, url, redis_url, prefix, config, "rt-first")
    second = None
    try:
        assert (await publish(base, TARGET, [event(i) for i in range(4)])).status == 202
        await until(lambda: receiver.concurrent == 2, "two deliveries under way", WAIT_S)
        first.send_signal(signal.SIGKILL)  # its delivery child dies with it
        first.wait(10)
        release.set()
        second, _ = _runtime_process(kind, url, redis_url, prefix, config, "rt-second")
        await receiver.wait_for(lambda r: set(r.delivered) == {f"e{i}" for i in range(4)}, timeout=90)
        await until_awaited(lambda: _settled(engine), "every event acknowledged", timeout=60)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


async def test_retention_is_applied_by_each_engine_and_a_trim_it_cannot_do_is_no_error(
        kind, runtime, receiver, engine):
    doc = mesh_config(kind, receiver.url)
    limited = {"max_age_seconds": None, "max_length": 5}
    doc["topics"] = [{**t, "retention": limited} if t["name"] == TARGET else t for t in doc["topics"]]
    rt = await runtime(seal({k: v for k, v in doc.items() if k not in ("version", "checksum", "generated_at")}, 1),
                       trim_interval=0.1)
    server, base = await serve(rt)
    try:
        for first in range(0, 250, 50):
            assert (await publish(base, TARGET, [event(i) for i in range(first, first + 50)])).status == 202
        passes = rt.retention_passes
        await until(lambda: rt.retention_passes >= passes + 3, "three retention passes", WAIT_S)
        length = await engine.length(TARGET)
        # NATS keeps the stream's max_msgs itself; Redis trims whole nodes (MAXLEN ~) on appends and
        # in the runtime's pass; Tansu has no DeleteRecords, so only retention.ms would apply there
        expected = {"nats": lambda n: n == 5, "redis": lambda n: n < 250, "kafka": lambda n: n == 250}[kind]
        assert expected(length), length
        errors = rt.metrics.registry.get_sample_value("meshruntime_store_errors_total", {"operation": "trim"})
        assert not errors  # StoreUnsupported is the engine's answer, not a failure
    finally:
        await server.shutdown()
