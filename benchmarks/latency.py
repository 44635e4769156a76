"""Delivery latency: publish through a runtime at a steady rate, receive on a webhook, time it.

A real ``python -m meshruntime`` (gateway, defaults: journeys on for every event) delivers one
subscription (binary mode, max in flight 16) to a receiver on loopback in a process of its own.
The publisher sends single-event requests at --rate events per second for --seconds seconds
(after a warm-up) over keep-alive connections, stamping each event with the wall-clock time just
before its request is written; the receiver notes the time each event arrives. Both clocks are
the same machine's.

    .venv/bin/python benchmarks/latency.py [--rate 1000] [--seconds 30] [--redis-url redis://...]

Prints p50, p99 and max from publish to receipt, and last the p99 in milliseconds.
Target: p99 <= 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _runtime import cpu_seconds, default_redis_url, make_key, start_runtime  # noqa: E402

from meshruntime.config import seal  # noqa: E402
from meshruntime.keys import KeySpace  # noqa: E402

TOPIC = "bench.latency"


# -- the mesh ------------------------------------------------------------------------------------


def make_config(key_entry: dict, url: str, *, max_in_flight: int, state: str = "active", version: int = 1,
                topic: str = TOPIC) -> dict:
    doc = {
        "format": 1,
        "stores": [{"name": "default", "kind": "redis"}],
        "topics": [{"name": topic, "store": "default", "lifecycle": "active", "sunset": None, "schema": None,
                    "retention": {"max_age_seconds": None, "max_length": 10_000_000}}],
        "applications": [{"name": "bench", "team": "perf", "keys": [key_entry]}],
        "access_rules": [
            {"id": "rule-1", "principals": ["bench"], "topic": "bench.*", "actions": ["publish"],
             "effect": "allow", "description": ""},
            {"id": "sub-1", "principals": ["bench"], "topic": topic, "actions": ["subscribe"],
             "effect": "allow", "description": ""},
        ],
        "subscriptions": [{
            "id": "sub-1", "topic": topic, "application": "bench", "state": state,
            "delivery": {"url": url, "mode": "binary", "timeout_ms": 5000, "max_attempts": 8,
                         "backoff_base_ms": 100, "backoff_cap_ms": 5000, "max_in_flight": max_in_flight},
            "filters": [], "secret": "whsec-bench-0123456789abcdef",
        }],
        "routing_rules": [],
    }
    return seal(doc, version)


# -- the receiver (a process of its own: ``latency.py --serve-receiver``) -------------------------
class ReceiverProtocol(asyncio.Protocol):
    """A minimal HTTP/1.1 server: answers 200 to every POST and notes (sent ns, received ns) from
    the event's data; ``GET /stats`` reports. Lean on purpose: the benchmark measures the runtime,
    not a web framework, and this process shares the machine's CPUs with the runtime.

    The times go into arrays of machine integers, not a list of tuples: a list of 30,000 tuples
    made this process's own garbage collector pause for 15-20 ms, and the events arriving
    meanwhile were the run's slowest (its "max")."""

    sent_ns = array("q")
    received_ns = array("q")
    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            lower = head.lower()
            at = lower.find(b"content-length:")
            length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) \
                if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            if head.startswith(b"GET /stats"):
                pairs = b"pairs" in head.split(b"\r\n", 1)[0]
                both = list(zip(self.sent_ns, self.received_ns, strict=True)) if pairs else None
                payload = orjson.dumps({"count": len(self.received_ns), "pairs": both})
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
                continue
            at = body.find(b'"sent_ns":')
            sent = int(body[at + 10:body.find(b",", at)]) if at >= 0 else 0
            self.sent_ns.append(sent)
            self.received_ns.append(now)
            self.transport.write(self.OK)


def serve_receiver() -> None:
    import uvloop

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(ReceiverProtocol, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        gc.freeze()  # what start-up made is not scanned again (see ReceiverProtocol)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    uvloop.run(main())


def start_receiver() -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, __file__, "--serve-receiver"], stdout=subprocess.PIPE, text=True,
                               cwd=ROOT)
    return process, int(process.stdout.readline())


async def receiver_stats(port: int, pairs: bool = False) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /stats{'?pairs=1' if pairs else ''} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n"
                 .encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    return orjson.loads(body)


# -- the runtime ---------------------------------------------------------------------------------


async def wait_for_group(redis_url: str, prefix: str, topic: str = TOPIC) -> None:
    """The runtime has created the subscription's consumer group (it delivers from then on)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if any(g["name"] == b"sub-1" for g in await client.xinfo_groups(KeySpace(prefix).topic(topic))):
                    return
            except Exception:  # noqa: BLE001, S110 - the stream does not exist yet
                pass
            await asyncio.sleep(0.05)
        raise SystemExit("the runtime did not create the consumer group")
    finally:
        await client.aclose()


def cleanup(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=KeySpace(prefix).pattern, count=1000):
        client.delete(key)
    client.close()


def tear_down(runtime: subprocess.Popen | None, receiver: subprocess.Popen, redis_url: str, prefix: str,
              tmp: str, *, runtime_timeout: float = 30) -> None:
    """Stop the runtime and the receiver, remove the keys and the temporary folder."""
    if runtime is not None:
        runtime.terminate()
        runtime.wait(timeout=runtime_timeout)
    receiver.terminate()
    receiver.wait(timeout=10)
    cleanup(redis_url, prefix)
    shutil.rmtree(tmp, ignore_errors=True)


# -- the publisher -------------------------------------------------------------------------------
class Connection:
    """One keep-alive HTTP/1.1 connection to the runtime; minimal, to measure the runtime."""

    def __init__(self, host: str, port: int, key: str, topic: str) -> None:
        self.host, self.port = host, port
        self.head = (f"POST /v1/topics/{topic}/events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
                     "Content-Type: application/cloudevents+json\r\nContent-Length: ")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def publish(self, event: bytes) -> None:
        assert self.reader is not None and self.writer is not None
        self.writer.write(f"{self.head}{len(event)}\r\n\r\n".encode() + event)
        status = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length)
        if b" 202 " not in status:
            raise SystemExit(f"publish refused: {status!r} {body[:200]!r}")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def event(run: str, i: int) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": f"{run}-{i}", "source": "/bench", "type": "com.example.bench",
                         "datacontenttype": "application/json",
                         "data": {"sent_ns": time.time_ns(), "order_id": f"o-{i}", "amount": i % 100}})


async def publish_at_rate(connections: list[Connection], run: str, rate: float, seconds: float) -> int:
    """Publish ``rate`` events per second for ``seconds``, each when its time comes."""
    total = int(rate * seconds)
    free: asyncio.Queue[Connection] = asyncio.Queue()
    for connection in connections:
        free.put_nowait(connection)
    tasks: set[asyncio.Task] = set()
    start = time.perf_counter()

    async def send(connection: Connection, i: int) -> None:
        try:
            await connection.publish(event(run, i))
        finally:
            free.put_nowait(connection)

    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        connection = await free.get()
        task = asyncio.create_task(send(connection, i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return total


def percentile(sorted_values: list[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def main_async(args: argparse.Namespace) -> None:
    redis_url = args.redis_url or default_redis_url()
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    key, key_entry = make_key()
    receiver, receiver_port = start_receiver()
    runtime = None
    tmp = tempfile.mkdtemp(prefix="mesh-bench-")
    try:
        config_path = Path(tmp) / "mesh.json"
        url = f"http://127.0.0.1:{receiver_port}/hook"
        config_path.write_text(json.dumps(make_config(key_entry, url, max_in_flight=16)))
        runtime, host, port = start_runtime(redis_url, prefix, config_path, "--journey-sample-rate",
                                            str(args.journey_sample_rate))
        await wait_for_group(redis_url, prefix)
        connections = [await Connection(host, port, key, TOPIC).open() for _ in range(args.connections)]
        gc.collect()
        gc.freeze()  # the publisher's own collector is not what the run should time either
        warm = await publish_at_rate(connections, "warm", args.rate, args.warmup)
        while (await receiver_stats(receiver_port))["count"] < warm:
            await asyncio.sleep(0.05)
        cpu = cpu_seconds(runtime.pid)
        measured = await publish_at_rate(connections, "run", args.rate, args.seconds)
        runtime_cpu = cpu_seconds(runtime.pid) - cpu
        deadline = time.monotonic() + 30
        while (await receiver_stats(receiver_port))["count"] < warm + measured:
            if time.monotonic() > deadline:
                raise SystemExit("not every event arrived within 30 s")
            await asyncio.sleep(0.05)
        pairs = (await receiver_stats(receiver_port, pairs=True))["pairs"][warm:]
        for connection in connections:
            connection.close()
    finally:
        tear_down(runtime, receiver, redis_url, prefix, tmp)
    latencies = sorted((received - sent) / 1e6 for sent, received in pairs)
    p50, p99, worst = percentile(latencies, 50), percentile(latencies, 99), latencies[-1]
    print(f"{len(latencies)} events at {args.rate:.0f}/s for {args.seconds:.0f} s, single-event publishes over "
          f"{args.connections} connections, delivered in binary mode (max in flight 16), journey sample rate "
          f"{args.journey_sample_rate:g}")
    print(f"runtime CPU {runtime_cpu / measured * 1e6:.0f} us/event (publish and delivery), "
          f"{runtime_cpu / args.seconds:.0%} of a CPU; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"publish to receipt: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms")
    print(f"p99 ms = {p99:.2f} (target <= 10)")


def main() -> None:
    if "--serve-receiver" in sys.argv:
        serve_receiver()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second (default 1000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds (default 30)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up, not measured (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="publisher connections (default 16)")
    parser.add_argument("--journey-sample-rate", type=float, default=1.0,
                        help="the runtime's journey sampling (default 1: every event, the runtime's default)")
    parser.add_argument("--redis-url", help="Redis to use (default REDIS_URL, else a private one)")
    args = parser.parse_args()
    import uvloop

    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
