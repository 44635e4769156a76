"""Webhook delivery throughput of a runtime, beside its publish rate measured in the same run.

A real ``python -m meshruntime`` (gateway, defaults: journeys on for every event) and a lean
receiver on loopback (a process of its own, answering 200 at once).

(reference) publish: N single-event CloudEvents requests over 64 keep-alive connections, while
            the subscription is paused, so that the runtime only accepts and stores;
(measured)  delivery: the subscription is resumed (max in flight 64, binary mode) and delivers
            the N stored events; the rate runs from the first to the last receipt.

Both sides are one HTTP exchange per event (the runtime answering a publish, the runtime pushing
a delivery), so the ratio says whether delivery keeps up with what the runtime accepts one by
one. Batch publishes (hundreds of events per request) are far cheaper per event than any
per-event push and are not the comparison.

    .venv/bin/python benchmarks/delivery.py [-n 20000] [--redis-url redis://...]

Prints the ratio delivered/published last. Target: >= 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _runtime import cpu_seconds, default_redis_url, make_key, start_runtime  # noqa: E402
from latency import (  # noqa: E402
    Connection,
    event,
    make_config,
    receiver_stats,
    start_receiver,
    tear_down,
    wait_for_group,
)

TOPIC = "bench.delivery"


def applied_version(host: str, port: int) -> int | None:
    with urllib.request.urlopen(f"http://{host}:{port}/v1/info", timeout=2) as response:  # noqa: S310
        return json.loads(response.read())["config_version"]


async def apply(config_path: Path, doc: dict, host: str, port: int) -> None:
    """Write a new config version and wait until the runtime has applied it (it polls the file)."""
    config_path.write_text(json.dumps(doc))
    deadline = time.monotonic() + 15
    while applied_version(host, port) != doc["version"]:
        if time.monotonic() > deadline:
            raise SystemExit(f"the runtime did not apply config version {doc['version']}")
        await asyncio.sleep(0.05)


async def publish_all(connections: list[Connection], run: str, n: int) -> float:
    """Publish n single events, each connection sending its share back to back; seconds taken."""
    async def lane(connection: Connection, indexes: range) -> None:
        for i in indexes:
            await connection.publish(event(run, i))

    started = time.perf_counter()
    k = len(connections)
    await asyncio.gather(*(lane(c, range(j, n, k)) for j, c in enumerate(connections)))
    return time.perf_counter() - started


async def wait_count(port: int, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (await receiver_stats(port))["count"] < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"fewer than {count} events arrived within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def main_async(args: argparse.Namespace) -> None:
    redis_url = args.redis_url or default_redis_url()
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    key, key_entry = make_key()
    n, warm = args.events, 2000
    receiver, receiver_port = start_receiver()
    runtime = None
    tmp = tempfile.mkdtemp(prefix="mesh-bench-")
    try:
        config_path = Path(tmp) / "mesh.json"
        url = f"http://127.0.0.1:{receiver_port}/hook"

        def doc(version: int, state: str) -> dict:
            return make_config(key_entry, url, max_in_flight=64, state=state, version=version, topic=TOPIC)

        config_path.write_text(json.dumps(doc(1, "active")))
        runtime, host, port = start_runtime(redis_url, prefix, config_path)
        await wait_for_group(redis_url, prefix, TOPIC)
        connections = [await Connection(host, port, key, TOPIC).open() for _ in range(64)]

        # warm-up: connections on both sides, caches, the stream's first node
        await publish_all(connections, "warm", warm)
        await wait_count(receiver_port, warm, 60)

        await apply(config_path, doc(2, "paused"), host, port)
        cpu = cpu_seconds(runtime.pid)
        publish_seconds = await publish_all(connections, "run", n)
        publish_cpu = cpu_seconds(runtime.pid) - cpu

        cpu = cpu_seconds(runtime.pid)
        await apply(config_path, doc(3, "active"), host, port)
        await wait_count(receiver_port, warm + n, 300)
        delivery_cpu = cpu_seconds(runtime.pid) - cpu
        received = [at for _sent, at in (await receiver_stats(receiver_port, pairs=True))["pairs"][warm:]]
        for connection in connections:
            connection.close()
    finally:
        tear_down(runtime, receiver, redis_url, prefix, tmp, runtime_timeout=60)

    delivery_seconds = (max(received) - min(received)) / 1e9
    published, delivered = n / publish_seconds, (n - 1) / delivery_seconds
    print(f"events: {n} (after {warm} of warm-up); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"publish, single events over 64 connections:   {published:10,.0f} events/s "
          f"(runtime CPU {publish_cpu / n * 1e6:.0f} us/event)")
    print(f"delivery, max in flight 64, binary mode:      {delivered:10,.0f} events/s "
          f"(runtime CPU {delivery_cpu / n * 1e6:.0f} us/event)")
    print(f"delivered/published = {delivered / published:.2f} (target >= 0.80)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--events", type=int, default=20_000, help="events (default 20000)")
    parser.add_argument("--redis-url", help="Redis to use (default REDIS_URL, else a private one)")
    args = parser.parse_args()
    import uvloop

    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
