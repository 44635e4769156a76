"""The real ``python -m meshruntime`` process: flags, readiness, publishing, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest
from factories import key_for, make_config
from runtime_harness import event

from meshruntime.keys import KeySpace
from tests.portal_support.runtimes import ROOT, RuntimeProcess
from tests.portal_support.waiting import until_awaited


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "mesh.json"
    path.write_bytes(orjson.dumps(make_config()))
    return path


@pytest.fixture
def runtime(redis_url, key_prefix, redis_client, config_file):
    process = RuntimeProcess(["--application", "billing", "--listen", "127.0.0.1:0", "--store-url", redis_url,
                              "--config-file", str(config_file), "--prefix", key_prefix, "--log-level", "WARNING"])
    yield process
    if process.process.poll() is None:
        process.process.kill()
        process.process.wait()


async def wait_ready(session: aiohttp.ClientSession, url: str) -> dict:
    """The runtime's readiness report, once it says it is ready."""

    async def report() -> dict | None:
        async with session.get(f"{url}/readyz") as response:
            return await response.json() if response.status == 200 else None

    return await until_awaited(report, "the runtime to say it is ready", timeout=20)


def stored_ids(redis_client, keys: KeySpace, topic: str) -> list[str]:
    return [orjson.loads(f[b"event"])["id"] for _i, f in redis_client.xrange(keys.topic(topic))]


async def test_the_process_serves_publishes_health_and_metrics(runtime, redis_client, keys):
    async with aiohttp.ClientSession() as session:
        ready = await wait_ready(session, runtime.url)
        assert ready["config_version"] == 1 and ready["store"] == "reachable"
        async with session.get(f"{runtime.url}/v1/info") as response:
            info = await response.json()
            assert info["mode"] == "sidecar" and info["application"] == "billing"
        async with session.post(f"{runtime.url}/v1/topics/orders.shipped/events", data=orjson.dumps(event(1)),
                                headers={"Authorization": f"Bearer {key_for('billing')}",
                                         "Content-Type": "application/cloudevents+json"}) as response:
            assert response.status == 202
        # a sidecar of billing refuses shipping's key
        async with session.post(f"{runtime.url}/v1/topics/orders.shipped/events", data=orjson.dumps(event(2)),
                                headers={"Authorization": f"Bearer {key_for('shipping')}",
                                         "Content-Type": "application/cloudevents+json"}) as response:
            assert response.status == 401
        async with session.get(f"{runtime.url}/metrics") as response:
            text = await response.text()
            assert 'meshruntime_events_published_total{application="billing",topic="orders.shipped"} 1.0' in text
    assert stored_ids(redis_client, keys, "orders.shipped") == ["evt-1"]
    # it announces itself to the portal: a heartbeat with its application and applied config
    beats = [{k.decode(): v.decode() for k, v in fields.items()}
             for _id, fields in redis_client.xrange(keys.runtimes)]
    assert beats and beats[0]["application"] == "billing" and beats[0]["config_version"] == "1"
    # and, from the beat sent as it starts listening, where Prometheus scrapes it
    assert beats[-1]["metrics_url"] == f"{runtime.url}/metrics"
    assert runtime.stop() == 0


async def test_sigterm_finishes_in_flight_publishes_and_exits_cleanly(runtime, redis_client, keys):
    accepted: list[str] = []
    failed_before_acceptance = 0
    headers = {"Authorization": f"Bearer {key_for('billing')}", "Content-Type": "application/cloudevents+json"}

    async with aiohttp.ClientSession() as session:
        await wait_ready(session, runtime.url)
        first_answer = asyncio.Event()

        async def one(i: int) -> None:
            nonlocal failed_before_acceptance
            try:
                async with session.post(f"{runtime.url}/v1/topics/orders.shipped/events",
                                        data=orjson.dumps(event(i)), headers=headers) as response:
                    first_answer.set()
                    if response.status == 202:
                        accepted.append(f"evt-{i}")
                    else:
                        assert response.status == 503, await response.text()  # "shutting down"
                        failed_before_acceptance += 1
            except aiohttp.ClientError:
                failed_before_acceptance += 1  # the listener was already closed: never accepted

        tasks = [asyncio.create_task(one(i)) for i in range(400)]
        await first_answer.wait()
        runtime.process.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)

    assert runtime.process.wait(30) == 0
    assert accepted, "no publish finished"
    assert len(accepted) + failed_before_acceptance == 400
    # every publish that was answered 202 is in the store, and nothing else
    assert sorted(stored_ids(redis_client, keys, "orders.shipped")) == sorted(accepted)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines[1:] if line)}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split(" ", 2)[1]), headers


async def test_sigterm_answers_every_pipelined_keep_alive_request_that_arrived(runtime, redis_client, keys):
    """Eight keep-alive connections each keep three batches of 50 pipelined publishes on their way
    until SIGTERM, more than the server reads at once (its read is 256 KiB, and reading pauses
    while 16 requests wait): every request sent gets an answer, 202 or 503 with Connection: close,
    and every stream ends cleanly (a reset fails the test)."""
    batch, in_flight, connections = 50, 3, 8
    key = key_for("billing")
    host, _, port = runtime.url.removeprefix("http://").rpartition(":")

    def publish(number: int) -> bytes:
        body = orjson.dumps(event(number, data={"order_id": f"o-{number}", "note": "n" * 2000}))
        return (f"POST /v1/topics/orders.shipped/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/cloudevents+json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    async with aiohttp.ClientSession() as session:
        await wait_ready(session, runtime.url)
    stop_writing = asyncio.Event()
    answered_before_sigterm = asyncio.Event()
    sent: dict[int, list[int]] = {}
    answers: dict[int, list[tuple[int, dict[str, str]]]] = {}

    async def client(c: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        sent[c], answers[c] = [], []

        def send_batch() -> None:
            numbers = [c * 1_000_000 + len(sent[c]) + k for k in range(batch)]
            writer.write(b"".join(publish(n) for n in numbers))
            sent[c].extend(numbers)

        for _ in range(in_flight):
            send_batch()
        try:
            while len(answers[c]) < len(sent[c]):
                answers[c].append(await read_answer(reader))
                answered_before_sigterm.set()
                if answers[c][-1][1].get("connection") == "close":
                    break
                if len(answers[c]) % batch == 0 and not stop_writing.is_set():
                    send_batch()
            assert await reader.read() == b""  # the server ends the stream, without a reset
        finally:
            writer.close()

    clients = [asyncio.create_task(client(c)) for c in range(connections)]
    await answered_before_sigterm.wait()
    stop_writing.set()  # from here on nothing new is sent: only what is on its way
    runtime.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        await asyncio.gather(*clients)

    assert runtime.process.wait(30) == 0
    accepted = []
    for c in range(connections):
        assert len(answers[c]) == len(sent[c]), (c, len(answers[c]), len(sent[c]))
        for number, (status, headers) in zip(sent[c], answers[c], strict=True):
            assert status == 202 or (status == 503 and headers.get("connection") == "close"), (status, headers)
            if status == 202:
                accepted.append(f"evt-{number}")
    # every publish answered 202 is in the store, and nothing else
    assert sorted(stored_ids(redis_client, keys, "orders.shipped")) == sorted(accepted)


def test_it_explains_missing_settings(redis_url):
    result = subprocess.run([sys.executable, "-m", "meshruntime", "--gateway", "--store-url", redis_url],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "--config-redis-url" in result.stderr
    help_text = subprocess.run([sys.executable, "-m", "meshruntime", "--help"], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                               timeout=60).stdout
    for flag in ("--application", "--gateway", "--listen", "--store-url", "--config-redis-url", "--config-file",
                 "MESH_STORE_URL", "--max-event-bytes", "--journey-sample-rate", "--otlp-endpoint"):
        assert flag in help_text
