"""A new configuration takes effect while events flow: no restart, no failed in-flight request.

Configurations go the real way: ``publish_document`` to Redis, the runtime's ConfigWatcher
picks them up. Every wait has a deadline and fails naming what did not happen (``runtime_harness``).
"""

from __future__ import annotations

import asyncio
import sys
import threading

import orjson
import pytest
from factories import access_rule, make_config, topic
from runtime_harness import WAIT, event, running_runtime

from meshruntime.__main__ import build_parser, settings_from_args
from meshruntime.config import ConfigError, parse_document
from meshruntime.config_publish import publish_document
from meshruntime.keys import KeySpace
from meshruntime.store import RedisStreamsStore
from tests.portal_support.waiting import deadline, until

DENY_SHIPPED = access_rule("rule-8", ["billing"], "orders.shipped", ["publish"], effect="deny")


def v2_with_deny() -> dict:
    base = make_config()
    return make_config(version=2, access_rules=[*base["access_rules"], DENY_SHIPPED])


def v3_without_orders_created() -> dict:
    rules = [r for r in v2_with_deny()["access_rules"] if not r["id"].startswith("sub-")]
    return make_config(version=3, topics=["audit.orders", "orders.shipped"], access_rules=rules,
                       subscriptions=[], grant_subscriptions=False)


async def test_rules_and_topics_change_under_load_without_a_failed_request(redis_url, key_prefix, redis_client):
    publish_document(redis_client, make_config(), key_prefix)
    async with running_runtime(redis_url, key_prefix, apply=False, config_redis_url=redis_url,
                               config_poll_interval=0.2) as h:
        await h.config_applied(1)
        outcomes: dict[str, list[str]] = {"202": [], "403": [], "404": [], "other": []}
        stop = asyncio.Event()

        async def producer(worker: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                topic = "orders.shipped" if i % 2 else "orders.created"
                ev = event(worker * 1_000_000 + i)
                response = await h.publish(topic, ev)
                key = str(response.status) if response.status in (202, 403, 404) else "other"
                outcomes[key].append(ev["id"])
                await response.read()

        async def counted(n: int) -> None:
            async with deadline(WAIT, f"{n} publishes answered 202, 403 or 404"):
                while len(outcomes["202"]) + len(outcomes["403"]) + len(outcomes["404"]) < n:
                    await asyncio.sleep(0.005)

        workers = [asyncio.create_task(producer(w)) for w in range(8)]
        await counted(50)
        publish_document(redis_client, v2_with_deny(), key_prefix)
        await h.config_applied(2)
        before = len(outcomes["403"])
        await counted(len(outcomes["202"]) + 100)
        assert len(outcomes["403"]) > before  # the deny rule now refuses orders.shipped
        publish_document(redis_client, v3_without_orders_created(), key_prefix)
        await h.config_applied(3)
        await counted(len(outcomes["202"]) + len(outcomes["403"]) + len(outcomes["404"]) + 100)
        stop.set()
        async with deadline(WAIT, "the producers to finish their last publish"):
            await asyncio.gather(*workers)

        assert outcomes["other"] == []  # nothing failed
        assert outcomes["404"]  # orders.created is gone
        stored = {e["id"] for name in ("orders.shipped", "orders.created") for e in h.stored(name)}
        assert stored == set(outcomes["202"])  # every accepted event is stored, nothing refused is
        # after the last change, only refusals
        assert (await h.publish("orders.shipped", event(1))).status == 403
        assert (await h.publish("orders.created", event(2))).status == 404


class GatedStore(RedisStreamsStore):
    """Holds every append until the gate opens: a request stays in flight as long as a test needs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def append_many(self, entries, *, journey=()):
        self.waiting.set()
        await self.gate.wait()
        return await super().append_many(entries, journey=journey)


async def test_a_request_in_flight_finishes_under_the_configuration_it_started_with(
    redis_url, key_prefix, redis_client
):
    store = GatedStore.from_url(redis_url, prefix=key_prefix)
    async with running_runtime(redis_url, key_prefix, store=store) as h:
        in_flight = asyncio.create_task(h.publish("orders.created", event(1)))
        async with deadline(WAIT, "the publish to reach the store's append"):
            await store.waiting.wait()
        # the topic disappears and billing is denied everything while the append waits
        h.runtime.apply_config(make_config(
            version=2, topics=["audit.orders", "orders.shipped"], subscriptions=[], grant_subscriptions=False,
            access_rules=[access_rule("rule-9", "*", "*", ["publish"], effect="deny")]))
        assert (await h.publish("orders.shipped", event(3))).status == 403
        store.gate.set()
        response = await in_flight  # the harness bounds the publish
        assert response.status == 202, await response.text()
        assert [e["id"] for e in h.stored("orders.created")] == ["evt-1"]
        after = await h.publish("orders.created", event(2))
        assert after.status == 404
    await store.close()


async def test_a_refused_document_keeps_the_previous_one(redis_url, key_prefix, redis_client):
    publish_document(redis_client, make_config(), key_prefix)
    async with running_runtime(redis_url, key_prefix, apply=False, config_redis_url=redis_url,
                               config_poll_interval=0.2) as h:
        await h.config_applied(1)
        broken = make_config(version=2)
        broken["checksum"] = "0" * 64
        publish_document(redis_client, broken, key_prefix, check=False)
        await h.config_refused()
        assert h.runtime.config_version == 1
        ready = await h.ready()
        assert ready["config_version"] == 1 and "checksum" in ready["config_error"]
        assert (await h.publish("orders.shipped", event(1))).status == 202


def _checking_elsewhere() -> bool:
    """Whether a thread other than this one (the event loop's) is inside ``parse_document``."""
    me = threading.get_ident()
    for ident, frame in sys._current_frames().items():  # noqa: SLF001 - the one view of other threads' stacks
        while ident != me and frame is not None:
            if frame.f_code is parse_document.__code__:
                return True
            frame = frame.f_back
    return False


async def test_publishes_are_answered_while_a_large_bad_document_is_checked(redis_url, key_prefix, redis_client):
    """The issue's case, smaller: a bad document of tens of thousands of topics. Its parse and
    check run in a worker thread, so publishes are answered (the event loop runs) meanwhile:
    seen by a publish that starts and ends while that thread is inside ``parse_document``."""
    publish_document(redis_client, make_config(), key_prefix)
    async with running_runtime(redis_url, key_prefix, apply=False, config_redis_url=redis_url,
                               config_poll_interval=0.2) as h:
        await h.config_applied(1)
        bad = make_config(version=2, topics=[*make_config()["topics"], *(topic(f"bulk.t{i:05d}")
                                                                         for i in range(30_000))])
        bad["checksum"] = "0" * 64
        publish_document(redis_client, bad, key_prefix, check=False)
        answered_during_the_check = i = 0
        async with deadline(60, "the runtime to refuse configuration version 2"):
            while not (h.runtime.last_error or "").startswith("config version 2 refused"):
                i += 1
                before = _checking_elsewhere()
                response = await h.publish("orders.shipped", event(i))
                assert response.status == 202, await response.text()
                answered_during_the_check += before and _checking_elsewhere()
        assert answered_during_the_check > 0
        assert "checksum" in h.runtime.last_error and h.runtime.config_version == 1


async def test_a_document_over_the_size_limit_is_refused_unread(redis_url, key_prefix, redis_client, tmp_path):
    publish_document(redis_client, make_config(), key_prefix)
    async with running_runtime(redis_url, key_prefix, apply=False, config_redis_url=redis_url,
                               config_poll_interval=0.2, max_config_bytes=16 * 1024) as h:
        await h.config_applied(1)
        big = make_config(version=2, topics=[*make_config()["topics"], *(topic(f"bulk.t{i:04d}") for i in range(200))])
        publish_document(redis_client, big, key_prefix)
        await h.config_refused()
        ready = await h.ready()
        assert ready["config_version"] == 1
        assert f"is {len(orjson.dumps(big))} bytes, over this runtime's limit of 16384" in ready["config_error"]
        assert (await h.publish("orders.shipped", event(1))).status == 202
    # A config file over the limit is refused the same way, unread.
    path = tmp_path / "mesh.json"
    path.write_bytes(orjson.dumps(big))
    with pytest.raises(ConfigError, match=f"is {path.stat().st_size} bytes, over the limit of 16384"):
        async with running_runtime(redis_url, key_prefix, apply=False, config_file=path, max_config_bytes=16 * 1024):
            pass


async def test_the_heartbeat_tells_the_portal_the_size_limit(redis_url, key_prefix, redis_client):
    def limits_beaten() -> list[bytes]:
        return [fields[b"max_config_bytes"] for _id, fields in redis_client.xrange(KeySpace(key_prefix).runtimes)]

    async with running_runtime(redis_url, key_prefix, max_config_bytes=16 * 1024):
        (first, *_) = await until(limits_beaten, what="a heartbeat")
    assert first == b"16384"


def test_the_size_limit_is_a_runtime_flag_and_an_environment_variable(monkeypatch, capsys):
    base = ["--application", "a", "--store-url", "redis://x", "--config-redis-url", "redis://x"]
    assert settings_from_args(build_parser().parse_args(base)).max_config_bytes == 32 << 20
    assert settings_from_args(build_parser().parse_args([*base, "--max-config-bytes", "1000"])).max_config_bytes == 1000
    monkeypatch.setenv("MESH_MAX_CONFIG_BYTES", "2000")
    assert settings_from_args(build_parser().parse_args(base)).max_config_bytes == 2000
    with pytest.raises(SystemExit, match="--max-config-bytes must be 1 or more bytes, got 0"):
        settings_from_args(build_parser().parse_args([*base, "--max-config-bytes", "0"]))


async def test_a_config_file_is_re_read_when_it_changes(redis_url, key_prefix, redis_client, tmp_path):
    path = tmp_path / "mesh.json"
    path.write_bytes(orjson.dumps(make_config()))
    async with running_runtime(redis_url, key_prefix, apply=False, config_file=path,
                               config_file_poll_interval=0.05) as h:
        assert h.runtime.config_version == 1
        assert (await h.publish("orders.shipped", event(1))).status == 202
        path.write_bytes(orjson.dumps(v2_with_deny()))
        await h.config_applied(2)
        assert (await h.publish("orders.shipped", event(2))).status == 403


async def test_a_version_that_never_comes_fails_the_wait_naming_it(redis_url, key_prefix, redis_client):
    publish_document(redis_client, make_config(), key_prefix)
    async with running_runtime(redis_url, key_prefix, apply=False, config_redis_url=redis_url,
                               config_poll_interval=0.2) as h:
        await h.config_applied(1)
        with pytest.raises(pytest.fail.Exception, match="waiting for the runtime to apply configuration version 2"):
            await h.config_applied(2, within=0.5)
