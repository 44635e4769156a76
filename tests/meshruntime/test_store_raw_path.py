"""The store's raw RESP path (appends, delivery reads, acks) when Redis stops answering, and over TLS.

A Redis of the test's own is paused (``CLIENT PAUSE ... WRITE`` holds every write, as a frozen
or overloaded server would) or replaced by a TCP server that accepts and never answers; a
``rediss://`` Redis is the system's ``redis-server`` with certificates made for the test.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from private_redis import PrivateRedis, make_tls_files
from runtime_harness import event as order
from runtime_harness import running_runtime

from meshruntime.store import AppendEntry, RedisStreamsStore, StoreError, open_store

TOPIC = "orders.created"


def event(name: str) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": name, "source": "/t", "type": "t", "data": {}})


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_an_append_to_a_redis_that_stops_answering_fails_within_the_deadline_and_loses_nothing(
        private_redis, key_prefix):
    store = open_store(private_redis.url, prefix=key_prefix, reply_timeout_s=0.5)
    admin = private_redis.client()
    try:
        accepted = {name: stream_id for name, stream_id in zip(
            ["a1", "a2", "a3"], await store.append_many([AppendEntry(TOPIC, event(f"a{i}")) for i in (1, 2, 3)]),
            strict=True)}
        admin.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")  # until unpaused below
        try:
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"append failed: Redis did not answer within 0\.5 s"):
                async with asyncio.timeout(5):  # without a deadline of its own it waits for the pause
                    await store.append_many([AppendEntry(TOPIC, event("held"))])
            assert 0.45 <= time.monotonic() - started < 2.0
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
        # what was accepted is there, and the pool answers each request with its own replies (the
        # connection that timed out, whose late reply would answer the next request, is gone)
        later = await store.append_many([AppendEntry(TOPIC, event(f"b{i}")) for i in (1, 2)])
        stored = {orjson.loads(entry.event)["id"]: entry.id for entry in await store.read_range(TOPIC)}
        assert {name: stored[name] for name in accepted} == accepted
        assert [stored["b1"], stored["b2"]] == later
    finally:
        await store.close()
        admin.close()


async def test_a_publish_while_redis_stops_answering_is_refused_within_the_deadline(private_redis, key_prefix):
    store = open_store(private_redis.url, prefix=key_prefix, reply_timeout_s=0.5)
    admin = private_redis.client()
    try:
        async with running_runtime(private_redis.url, key_prefix, store=store) as h:
            assert (await h.publish("orders.created", order(1))).status == 202
            admin.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
            try:
                started = time.monotonic()
                async with asyncio.timeout(5):
                    refused = await h.publish("orders.created", order(2))
                assert refused.status == 503 and (await refused.json())["error"] == "store_unavailable"
                assert time.monotonic() - started < 2.0
            finally:
                admin.execute_command("CLIENT", "UNPAUSE")
            assert (await h.publish("orders.created", order(3))).status == 202
            stored = [stored["id"] for stored in h.stored("orders.created")]
            assert {"evt-1", "evt-3"} <= set(stored)  # evt-2's fate was unknown to its publisher: 503
    finally:
        await store.close()
        admin.close()


async def test_every_raw_request_to_a_server_that_never_answers_fails_within_its_deadline():
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStreamsStore.from_url(f"redis://127.0.0.1:{port}/0", prefix="silent:", reply_timeout_s=0.3)
    try:
        async with asyncio.timeout(10):
            for what, call, at_least in (
                    ("append", lambda: store.append_many([AppendEntry(TOPIC, event("x"))]), 0.3),
                    ("read_group", lambda: store.read_group(TOPIC, "g", "c", 10, block_ms=200), 0.5),  # + its block
                    ("read_group", lambda: store.read_group(TOPIC, "g", "c", 10, pending=True), 0.3),
                    ("ack", lambda: store.ack(TOPIC, "g", ["1-1"]), 0.3)):
                started = time.monotonic()
                with pytest.raises(StoreError, match=f"{what} failed: Redis did not answer within {at_least:g} s"):
                    await call()
                assert at_least - 0.05 <= time.monotonic() - started < at_least + 1.0
        assert len(connections) == 4  # none reused after it timed out
    finally:
        await store.close()
        server.close()


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls-redis")
    server = PrivateRedis(directory, tls=make_tls_files(directory))
    server.start()
    yield server
    server.stop()


async def round_trip(url: str, key_prefix: str) -> list[bytes]:
    """Append over the raw path, read back over it (a delivery read) and over redis-py."""
    store = open_store(url, prefix=key_prefix)
    try:
        await store.ensure_group(TOPIC, "sub-1", "0")
        ids = await store.append_many([AppendEntry(TOPIC, event("tls-1"))])
        read = await store.read_group(TOPIC, "sub-1", "rt", 10, block_ms=100)
        assert [entry.id for entry in read] == ids
        assert await store.ack(TOPIC, "sub-1", ids) == 1
        return [entry.event for entry in await store.read_range(TOPIC)]
    finally:
        await store.close()


async def test_a_rediss_url_s_tls_options_hold_on_the_raw_path(tls_redis, key_prefix):
    ca = tls_redis.tls.ca
    assert await round_trip(f"{tls_redis.url}?ssl_ca_certs={ca}", key_prefix) == [event("tls-1")]
    # no authority to check the server with: certificate checks switched off, as redis-py does it
    assert len(await round_trip(f"{tls_redis.url}?ssl_cert_reqs=none", f"{key_prefix}b:")) == 1


async def test_a_rediss_url_without_the_server_s_authority_is_refused_by_certificate(tls_redis, key_prefix):
    store = open_store(tls_redis.url, prefix=key_prefix)  # the default: required, against the system's CAs
    try:
        with pytest.raises(StoreError, match="CERTIFICATE_VERIFY_FAILED"):
            await store.append_many([AppendEntry(TOPIC, event("x"))])
    finally:
        await store.close()


@pytest.mark.parametrize(("query", "message"), [
    ("ssl_cert_reqs=sometimes", "its TLS options are not usable: Invalid SSL Certificate Requirements Flag"),
    ("ssl_bogus=1", "a TLS option redis-py does not know .*'ssl_bogus'"),
    ("ssl_ca_certs=/nonexistent/ca.crt", "its TLS options are not usable: .*No such file"),
])
def test_unusable_tls_options_stop_the_store_at_once_naming_what_is_wrong(query, message):
    with pytest.raises(ValueError, match=message) as refused:
        open_store(f"rediss://someone:s3cret@localhost:6390/0?{query}")
    assert "s3cret" not in str(refused.value)
