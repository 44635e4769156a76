"""Publish throughput of the runtime against raw Redis, measured in one run.

(a) reference: redis-py pipelined XADD of N structured CloudEvents from one asyncio process;
(b) the runtime's batch publish of the same events (batches of 100, 8 keep-alive connections);
(c) single-event publishes over 64 keep-alive connections.

The runtime is the real ``python -m meshruntime`` process (defaults: journeys on for every
event), configured from a MeshConfig file. The load generator is a minimal HTTP/1.1 client on
asyncio streams, so that it measures the runtime rather than a client library.

    .venv/bin/python benchmarks/publish.py [-n 50000] [--redis-url redis://...]

Targets: b/a >= 0.6 and c/a >= 0.25. Ratios are printed last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _runtime import cpu_seconds, default_redis_url, make_key, publish_config, start_runtime  # noqa: E402

from meshruntime.keys import KeySpace  # noqa: E402

TOPIC = "bench.events"


def make_events(n: int, run: str) -> list[dict]:
    return [
        {"specversion": "1.0", "id": f"{run}-{i}", "source": "/bench/producer", "type": "com.example.bench",
         "time": "2026-11-28T14:30:00Z", "datacontenttype": "application/json",
         "data": {"order_id": f"o-{i}", "amount": i % 1000 / 10, "currency": "EUR", "items": [1, 2, 3]}}
        for i in range(n)
    ]


# -- (a) raw redis-py ----------------------------------------------------------------------------
async def raw_xadd(redis_url: str, key: str, bodies: list[bytes], chunk: int) -> float:
    client = aioredis.Redis.from_url(redis_url)
    started = time.perf_counter()
    for start in range(0, len(bodies), chunk):
        pipe = client.pipeline(transaction=False)
        for body in bodies[start:start + chunk]:
            pipe.xadd(key, {"event": body}, maxlen=10_000_000, approximate=True)
        await pipe.execute()
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed


# -- HTTP load generator -------------------------------------------------------------------------
def http_request(path: str, body: bytes, content_type: str, key: str) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def worker(host: str, port: int, requests: list[bytes], failures: list[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            at = head.lower().find(b"content-length:")
            length = int(head[at + 15:head.index(b"\r\n", at)]) if at >= 0 else 0
            body = await reader.readexactly(length)
            if head[9:12] != b"202":
                failures.append(head.split(b"\r\n", 1)[0].decode() + " " + body[:200].decode("utf-8", "replace"))
    finally:
        writer.close()


async def run_http(host: str, port: int, requests: list[bytes], connections: int) -> float:
    per_connection = [requests[i::connections] for i in range(connections)]
    failures: list[str] = []
    started = time.perf_counter()
    await asyncio.gather(*(worker(host, port, chunk, failures) for chunk in per_connection))
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, first: {failures[0]}")
    return elapsed


# -- the runtime process -------------------------------------------------------------------------


def wait_ready(host: str, port: int, timeout: float = 15.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the runtime did not become ready")
        time.sleep(0.05)


async def main_async(args: argparse.Namespace) -> None:
    redis_url = args.redis_url or default_redis_url()
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    keys = KeySpace(prefix)
    stream = keys.topic(TOPIC)
    sync = redis.Redis.from_url(redis_url)
    key, key_entry = make_key()
    n = args.events
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "mesh.json"
        config_path.write_text(json.dumps(publish_config(key_entry, TOPIC, max_length=10_000_000)))
        process, host, port = start_runtime(redis_url, prefix, config_path)
        try:
            wait_ready(host, port)
            # warm-up: connections, caches, the stream's first node
            warm = make_events(2000, "warm")
            await run_http(host, port, [http_request(f"/v1/topics/{TOPIC}/events", orjson.dumps(e),
                                                     "application/cloudevents+json", key) for e in warm], 16)

            events_a = make_events(n, "a")
            bodies = [orjson.dumps(e) for e in events_a]
            seconds_a = await raw_xadd(redis_url, keys.topic("raw"), bodies, args.pipeline)

            events_b = make_events(n, "b")
            batches = [http_request(f"/v1/topics/{TOPIC}/events", orjson.dumps(events_b[i:i + 100]),
                                    "application/cloudevents-batch+json", key) for i in range(0, n, 100)]
            cpu = cpu_seconds(process.pid)
            seconds_b = await run_http(host, port, batches, 8)
            cpu_b = cpu_seconds(process.pid) - cpu

            events_c = make_events(n, "c")
            singles = [http_request(f"/v1/topics/{TOPIC}/events", orjson.dumps(e),
                                    "application/cloudevents+json", key) for e in events_c]
            cpu = cpu_seconds(process.pid)
            seconds_c = await run_http(host, port, singles, 64)
            cpu_c = cpu_seconds(process.pid) - cpu

            stored = sync.xlen(stream)
            expected = n * 2 + len(warm)
            if stored != expected:
                raise SystemExit(f"the topic holds {stored} events, expected {expected}")
        finally:
            process.terminate()
            process.wait(timeout=30)
            for k in sync.scan_iter(match=keys.pattern, count=1000):
                sync.delete(k)
            sync.close()

    rate_a, rate_b, rate_c = n / seconds_a, n / seconds_b, n / seconds_c
    print(f"events: {n} per run, {len(bodies[0])} bytes each")
    print(f"(a) redis-py pipelined XADD (pipelines of {args.pipeline}): {rate_a:12,.0f} events/s")
    print(f"(b) runtime batch publish (100/request, 8 connections): {rate_b:12,.0f} events/s")
    print(f"(c) runtime single-event publish (64 connections):       {rate_c:12,.0f} events/s")
    print(f"runtime CPU per event: (b) {cpu_b / n * 1e6:.0f} us, (c) {cpu_c / n * 1e6:.0f} us; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"b/a = {rate_b / rate_a:.2f} (target >= 0.60)")
    print(f"c/a = {rate_c / rate_a:.2f} (target >= 0.25)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--events", type=int, default=50_000, help="events per run (default 50000)")
    parser.add_argument("--pipeline", type=int, default=100, help="XADDs per pipeline in (a) (default 100)")
    parser.add_argument("--redis-url", help="Redis to use (default REDIS_URL, else a private one)")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_async(args))
    else:
        uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
