"""What watching costs: publish throughput with nobody watching, then with 20 browsers watching.

A real ``python -m meshruntime`` (gateway, defaults: journeys on for every event) takes single-
event publishes as fast as 64 keep-alive connections send them, for --seconds seconds, twice:

(a) nobody watches the topic: the runtime does not tap it;
(b) 20 websocket clients watch it through the portal (uvicorn, the real channel layer, a
    process of their own): the runtime taps every event, the portal subscribes once and paces
    each client to MESH_TAIL_RATE (50) events a second.

Each event carries the wall-clock time its request was written (extension ``benchsent``); each
client notes when it receives it, so (b) also gives the publish-to-browser latency of what the
clients are shown. Both clocks are the same machine's.

    .venv/bin/python benchmarks/tail.py [--seconds 30] [--clients 20] [--redis-url redis://...]

Prints both publish rates, the p99 from publish to browser, and last the ratio (b)/(a).
Targets: ratio >= 0.9; p99 <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _runtime import (  # noqa: E402
    cpu_seconds,
    default_redis_url,
    make_key,
    private_data_dir,
    publish_config,
    remove_data_dir,
    start_runtime,
)

from meshruntime.keys import KeySpace  # noqa: E402

TOPIC = "bench.tail"
CONNECTIONS = 64


# -- the load: single events as fast as the runtime takes them -----------------------------------


def request(key: str, run: str, n: int) -> bytes:
    body = json.dumps({
        "specversion": "1.0", "id": f"{run}-{n}", "source": "/bench/producer", "type": "com.example.bench",
        "datacontenttype": "application/json", "benchsent": repr(time.time()),
        "data": {"order_id": f"o-{n}", "amount": n % 1000 / 10, "currency": "EUR", "items": [1, 2, 3]},
    }).encode()
    head = (f"POST /v1/topics/{TOPIC}/events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/cloudevents+json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def connection(host: str, port: int, key: str, run: str, deadline: float, counter: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    loop = asyncio.get_running_loop()
    n = 0
    try:
        while loop.time() < deadline:
            writer.write(request(key, f"{run}-{id(writer)}", n))
            head = await reader.readuntil(b"\r\n\r\n")
            at = head.lower().find(b"content-length:")
            await reader.readexactly(int(head[at + 15:head.index(b"\r\n", at)]) if at >= 0 else 0)
            if head[9:12] != b"202":
                status = head.split(b"\r\n", 1)[0].decode()
                raise SystemExit(f"publish failed: {status}")
            n += 1
            counter[0] += 1
    finally:
        writer.close()


async def publish_for(host: str, port: int, key: str, run: str, seconds: float) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    counter = [0]
    started = loop.time()
    await asyncio.gather(*(connection(host, port, key, run, started + seconds, counter) for _ in range(CONNECTIONS)))
    return counter[0], loop.time() - started


# -- the watchers: a process of their own ---------------------------------------------------------


async def watch(portal: str, path: str, sessions: list[str], ready_file: Path, out_file: Path) -> None:
    """Connect every client, say so, and record (received at - sent at) until told to stop (SIGTERM)."""
    import signal

    import aiohttp

    latencies: list[tuple[float, float]] = []
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def client(session_key: str, connected: asyncio.Event) -> None:
        headers = {"Cookie": f"sessionid={session_key}", "Origin": portal}
        async with aiohttp.ClientSession() as http, http.ws_connect(portal.replace("http", "ws") + path,
                                                                     headers=headers, max_msg_size=0) as socket:
            connected.set()
            async for message in socket:
                received = time.time()
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(message.data)
                if data["type"] == "events":
                    for event in data["events"]:
                        sent = float(event["attributes"]["benchsent"])
                        latencies.append((sent, received - sent))

    flags = [asyncio.Event() for _ in sessions]
    tasks = [asyncio.create_task(client(s, f)) for s, f in zip(sessions, flags, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(f.wait() for f in flags)), 30)
    ready_file.write_text("connected")
    await stop.wait()
    for task in tasks:
        task.cancel()
    out_file.write_text(json.dumps(latencies))


# -- the portal ------------------------------------------------------------------------------------


def prepare_portal(clients: int) -> tuple[int, list[str]]:
    """Migrate the portal's database (settings from the environment), add the topic and a staff
    user; a signed-in session per client."""
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from meshadmin.models import Team
    from topics.models import EventStore, Topic

    call_command("migrate", verbosity=0)
    team = Team.objects.create(name="Perf", slug="perf")
    topic = Topic.objects.create(name=TOPIC, team=team, store=EventStore.objects.create(name="default"))
    user = User.objects.create_user("bench", is_staff=True)
    sessions = []
    for _ in range(clients):
        client = Client()
        client.force_login(user)
        sessions.append(client.cookies["sessionid"].value)
    return topic.pk, sessions


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def healthy(url: str) -> bool:
    import urllib.request

    try:
        return urllib.request.urlopen(f"{url}/healthz", timeout=1).status == 200
    except OSError:
        return False


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(args: argparse.Namespace) -> None:
    import redis

    redis_url = args.redis_url or default_redis_url()
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    data_dir = private_data_dir()
    work = Path(tempfile.mkdtemp(prefix="meshadmin-tail-"))
    env = {"DJANGO_SETTINGS_MODULE": "meshadmin.settings.dev", "REDIS_URL": redis_url, "MESH_KEY_PREFIX": prefix,
           "DATABASE_URL": f"sqlite:///{work / 'portal.sqlite3'}"}
    os.environ.update(env)
    topic_pk, sessions = prepare_portal(args.clients)
    key, key_entry = make_key()
    config_path = work / "mesh.json"
    config_path.write_text(json.dumps(publish_config(key_entry, TOPIC, max_length=1_000_000)))
    runtime, host, port = start_runtime(redis_url, prefix, config_path)
    portal_port = 8700 + os.getpid() % 1000
    portal_url = f"http://127.0.0.1:{portal_port}"
    portal = subprocess.Popen([sys.executable, "-m", "uvicorn", "meshadmin.asgi:application", "--host", "127.0.0.1",
                               "--port", str(portal_port), "--no-access-log", "--log-level", "warning",
                               "--timeout-graceful-shutdown", "5"],
                              cwd=ROOT, env={**os.environ, **env})
    watchers = None
    client = redis.Redis.from_url(redis_url)
    try:
        wait_until(lambda: healthy(portal_url), 30, "the portal")
        asyncio.run(publish_for(host, port, key, "warm-a", 3))
        cpu = cpu_seconds(runtime.pid)
        count_a, seconds_a = asyncio.run(publish_for(host, port, key, "a", args.seconds))
        cpu_a = cpu_seconds(runtime.pid) - cpu

        out = work / "latencies.json"
        watchers = subprocess.Popen([sys.executable, __file__, "--watch", portal_url,
                                     f"/ws/tracing/topics/{topic_pk}/tail/", ",".join(sessions), str(out)],
                                    cwd=ROOT, env={**os.environ, **env})
        wait_until(out.with_suffix(".ready").exists, 60, "the websocket clients")
        wait_until(lambda: client.exists(KeySpace(prefix).tap_watch(TOPIC)), 10, "the watch key")
        asyncio.run(publish_for(host, port, key, "warm-b", 3))  # the runtime reads watch keys once a second
        cpu, cpu_portal = cpu_seconds(runtime.pid), cpu_seconds(portal.pid)
        measured_from = time.time()
        count_b, seconds_b = asyncio.run(publish_for(host, port, key, "b", args.seconds))
        cpu_b, cpu_portal = cpu_seconds(runtime.pid) - cpu, cpu_seconds(portal.pid) - cpu_portal
        watchers.terminate()
        watchers.wait(60)
        samples = json.loads(out.read_text())
        latencies = [latency for sent, latency in samples if sent >= measured_from]
    finally:
        for process in (watchers, portal, runtime):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    print(f"{process.args[2]} did not stop within 30 s of SIGTERM; killed", file=sys.stderr)
                    process.kill()
                    process.wait(30)
        for name in client.scan_iter(match=KeySpace(prefix).pattern, count=1000):
            client.delete(name)
        client.close()
        remove_data_dir(data_dir)

    rate_a, rate_b = count_a / seconds_a, count_b / seconds_b
    print(f"single-event publishes over {CONNECTIONS} connections, {args.seconds:.0f} s each; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"(a) nobody watching:            {rate_a:10,.0f} events/s  "
          f"(runtime CPU {cpu_a / count_a * 1e6:.0f} us/event)")
    print(f"(b) {args.clients} websocket clients watching: {rate_b:10,.0f} events/s  "
          f"(runtime CPU {cpu_b / count_b * 1e6:.0f} us/event; portal CPU {cpu_portal / seconds_b * 100:.0f}%)")
    print(f"(b) events shown to the clients: {len(latencies):,} ({len(latencies) / seconds_b / args.clients:.0f}/s "
          f"per client); publish to browser p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
          f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, max {max(latencies, default=float('nan')) * 1000:.0f} ms")
    print(f"runtime CPU per event (a)/(b) = {(cpu_a / count_a) / (cpu_b / count_b):.2f} "
          "(what watching costs the runtime itself, whatever else the machine runs)")
    print(f"p99 publish to browser = {percentile(latencies, 0.99) * 1000:.0f} ms (target <= 250)")
    print(f"b/a = {rate_b / rate_a:.2f} (target >= 0.90)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds each run publishes (default 30)")
    parser.add_argument("--clients", type=int, default=20, help="websocket clients in run (b) (default 20)")
    parser.add_argument("--redis-url", help="Redis to use (default REDIS_URL, else a private one)")
    parser.add_argument("--watch", nargs=4, metavar=("PORTAL", "PATH", "SESSIONS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.watch:
        portal, path, sessions, out = args.watch
        out_path = Path(out)
        asyncio.run(watch(portal, path, sessions.split(","), out_path.with_suffix(".ready"), out_path))
        return
    run(args)


if __name__ == "__main__":
    main()
