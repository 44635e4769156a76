"""ConfigWatcher and Heartbeater against a real Redis: apply, refuse, cache, recover, report."""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio
from factories import make_config, topic
from private_redis import PrivateRedis

from meshruntime import config_watcher as watcher_module
from meshruntime.config import canonical_json, load_file, seal
from meshruntime.config_publish import publish_document
from meshruntime.config_watcher import ConfigWatcher
from meshruntime.heartbeat import Heartbeater
from meshruntime.identity import default_runtime_id
from meshruntime.keys import KeySpace
from meshruntime.patch import make_patch
from tests.portal_support.waiting import free_port, until

# Generous bounds for a loaded CI machine; every wait ends as soon as its condition holds.
TIMEOUT = 10.0


async def quiet(watcher: ConfigWatcher) -> None:
    """Wait until the watcher is subscribed and has looked at ``latest`` since, twice.

    Subscribing wakes the poller once; two reads of ``latest`` that began after we saw the
    subscription mean that wake-up is spent, so what happens next is due to what the test does.
    """
    await until(lambda: watcher.subscribed, what="the subscription")
    seen = watcher.checks
    await until(lambda: watcher.checks >= seen + 2, what="the poller to settle")


class Applied:
    """An ``on_apply`` that records what it was given, and can be told to refuse."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.refuse: set[int] = set()

    async def __call__(self, doc: dict[str, Any]) -> None:
        await asyncio.sleep(0)  # a real runtime awaits while it builds its state
        if doc["version"] in self.refuse:
            raise RuntimeError(f"store unavailable while applying {doc['version']}")
        self.docs.append(doc)

    @property
    def versions(self) -> list[int]:
        return [doc["version"] for doc in self.docs]


@pytest.fixture
async def watch(redis_url: str, key_prefix: str, redis_client) -> AsyncIterator[Callable[..., Any]]:
    """Start watchers on this test's prefix; all are stopped at the end."""
    started: list[ConfigWatcher] = []

    async def start(**kwargs: Any) -> ConfigWatcher:
        kwargs.setdefault("prefix", key_prefix)
        kwargs.setdefault("poll_interval", 0.2)
        kwargs.setdefault("reconnect_max_delay", 0.5)
        watcher = ConfigWatcher(kwargs.pop("url", redis_url), **kwargs)
        started.append(watcher)
        await watcher.start()
        return watcher

    yield start
    for watcher in started:
        await watcher.stop()


# --------------------------------------------------------------------------------------------
# Applying


async def test_it_applies_a_published_version_through_the_channel(watch, redis_client, key_prefix) -> None:
    applied = Applied()
    publish_document(redis_client, make_config(version=1), prefix=key_prefix)
    watcher = await watch(on_apply=applied, poll_interval=0.05)
    await watcher.wait_for_version(1, timeout=TIMEOUT)
    await quiet(watcher)
    # From the next wait on, polling is so slow that only the channel can explain an update.
    watcher.poll_interval = 600
    seen = watcher.checks
    await until(lambda: watcher.checks > seen, what="the last short wait to end")

    second = make_config(version=2, topics=["audit.orders", "orders.created", "orders.shipped", "orders.paid"])
    publish_document(redis_client, second, prefix=key_prefix)
    current = await watcher.wait_for_version(2, timeout=TIMEOUT)

    assert current == second
    assert watcher.version == 2 and watcher.checksum == second["checksum"]
    assert watcher.last_error is None
    assert applied.versions == [1, 2]


async def test_a_missed_message_is_recovered_by_polling(watch, redis_client, keys) -> None:
    watcher = await watch(poll_interval=0.2)
    await quiet(watcher)
    doc = make_config(version=4)
    # What a lost PUBLISH leaves behind: the snapshot and the pointer, and no message.
    redis_client.set(keys.config(4), canonical_json(doc))
    redis_client.set(keys.config_latest, "4")
    assert (await watcher.wait_for_version(4, timeout=TIMEOUT)) == doc


async def test_it_jumps_to_the_newest_version(watch, redis_client, key_prefix) -> None:
    applied = Applied()
    for version in (1, 2, 3):
        publish_document(redis_client, make_config(version=version), prefix=key_prefix)
    watcher = await watch(on_apply=applied)
    await watcher.wait_for_version(3, timeout=TIMEOUT)
    assert applied.versions == [3]


def _next(doc: dict[str, Any], version: int, description: str) -> dict[str, Any]:
    """``doc`` as the next version, with rule-1's description changed."""
    body = {key: value for key, value in doc.items() if key not in ("version", "checksum")}
    body["access_rules"] = [dict(rule, description=description) if rule["id"] == "rule-1" else rule
                            for rule in doc["access_rules"]]
    return seal(body, version)


def _announce_patches(client: redis.Redis, keys: KeySpace, docs: list[dict[str, Any]], *, snapshots: bool) -> None:
    """Write the patches from each of ``docs`` to the next (and their snapshots if asked), then
    move ``latest`` and announce it, as the portal's publish does."""
    for old, new in zip(docs, docs[1:], strict=False):
        client.set(keys.config_patch(new["version"]), json.dumps(make_patch(old, new)))
        if snapshots:
            client.set(keys.config(new["version"]), canonical_json(new))
    client.set(keys.config_latest, str(docs[-1]["version"]))
    client.publish(keys.config_channel, str(docs[-1]["version"]))


async def test_a_runtime_one_version_behind_applies_the_patch(watch, redis_client, key_prefix, keys, tmp_path) -> None:
    first = make_config(version=1)
    publish_document(redis_client, first, prefix=key_prefix)
    watcher = await watch(cache_path=tmp_path / "config.json")
    await watcher.wait_for_version(1, timeout=TIMEOUT)
    second = _next(first, 2, "patched")
    # No snapshot of version 2: only the patch can take the watcher there.
    _announce_patches(redis_client, keys, [first, second], snapshots=False)
    assert (await watcher.wait_for_version(2, timeout=TIMEOUT)) == second
    assert watcher.checksum == second["checksum"] and watcher.last_error is None
    assert load_file(tmp_path / "config.json") == second  # the cache holds the patched document


async def test_a_runtime_several_versions_behind_chains_the_patches(watch, redis_client, key_prefix, keys) -> None:
    docs = [make_config(version=1)]
    publish_document(redis_client, docs[0], prefix=key_prefix)
    watcher = await watch()
    await watcher.wait_for_version(1, timeout=TIMEOUT)
    for version in (2, 3, 4):
        docs.append(_next(docs[-1], version, f"version {version}"))
    _announce_patches(redis_client, keys, docs, snapshots=False)
    assert (await watcher.wait_for_version(4, timeout=TIMEOUT)) == docs[-1]


async def test_a_missing_patch_sends_the_runtime_to_the_snapshot(watch, redis_client, key_prefix, keys) -> None:
    docs = [make_config(version=1)]
    publish_document(redis_client, docs[0], prefix=key_prefix)
    watcher = await watch()
    await watcher.wait_for_version(1, timeout=TIMEOUT)
    docs += [_next(docs[0], 2, "two"), _next(docs[0], 3, "three")]
    _announce_patches(redis_client, keys, docs, snapshots=True)
    redis_client.delete(keys.config_patch(2))
    redis_client.delete(keys.config(2))  # the snapshot of the newest is enough
    assert (await watcher.wait_for_version(3, timeout=TIMEOUT)) == docs[-1]


async def test_a_version_published_without_a_patch_leaves_none_of_an_earlier_history(watch, redis_client,
                                                                                    key_prefix, keys) -> None:
    """A patch left under a version's name (numbers reused after a restore, say) would take a
    runtime to content that is not the version's: publishing without a patch deletes it."""
    first = make_config(version=1)
    publish_document(redis_client, first, prefix=key_prefix)
    watcher = await watch()
    await watcher.wait_for_version(1, timeout=TIMEOUT)
    redis_client.set(keys.config_patch(2), json.dumps(make_patch(first, _next(first, 2, "an earlier history"))))
    second = _next(first, 2, "the version published")
    publish_document(redis_client, second, prefix=key_prefix)
    assert not redis_client.exists(keys.config_patch(2))
    assert (await watcher.wait_for_version(2, timeout=TIMEOUT)) == second


async def test_a_patch_that_fails_its_checks_gives_way_to_the_snapshot(watch, redis_client, key_prefix, keys,
                                                                      caplog) -> None:
    first = make_config(version=1)
    publish_document(redis_client, first, prefix=key_prefix)
    watcher = await watch()
    await watcher.wait_for_version(1, timeout=TIMEOUT)
    second = _next(first, 2, "the real content")
    patch = copy.deepcopy(make_patch(first, second))
    patch["sections"]["access_rules"][0][2][0]["effect"] = "deny"  # damaged on the way
    publish_document(redis_client, second, prefix=key_prefix, patch=patch)  # snapshot, patch, pointer, message
    assert (await watcher.wait_for_version(2, timeout=TIMEOUT)) == second
    assert watcher.last_error is None
    assert "config patches 2..2 not applied (checksum: the patched content's checksum is" in caplog.text


def _collectable(obj: object) -> bool:
    """Whether the cyclic collector scans ``obj`` (frozen objects are not among its objects)."""
    return any(candidate is obj for candidate in gc.get_objects())


@pytest.mark.parametrize("freeze", [True, False])
async def test_a_freezing_watcher_takes_each_snapshot_out_of_the_collectors_reach(watch, redis_client, key_prefix,
                                                                                  freeze) -> None:
    gc.unfreeze()
    try:
        watcher = await watch(freeze=freeze)
        for version in (1, 2):
            publish_document(redis_client, make_config(version=version, bare=version == 2), prefix=key_prefix)
            await watcher.wait_for_version(version, timeout=TIMEOUT)
            assert _collectable(watcher.current) is not freeze
            assert _collectable(watcher.current["topics"]) is not freeze
    finally:
        gc.unfreeze()


async def test_a_rollback_is_a_newer_version_with_older_content(watch, redis_client, key_prefix) -> None:
    first = make_config(version=1)
    second = make_config(version=2, topics=["audit.orders", "orders.created", "orders.shipped", "orders.paid"])
    watcher = await watch()
    publish_document(redis_client, first, prefix=key_prefix)
    await watcher.wait_for_version(1, timeout=TIMEOUT)
    publish_document(redis_client, second, prefix=key_prefix)
    await watcher.wait_for_version(2, timeout=TIMEOUT)

    publish_document(redis_client, seal(first, 3), prefix=key_prefix)
    current = await watcher.wait_for_version(3, timeout=TIMEOUT)
    assert current["checksum"] == first["checksum"]
    assert [t["name"] for t in current["topics"]] == [t["name"] for t in first["topics"]]


async def test_versions_only_move_forward(watch, redis_client, key_prefix, keys) -> None:
    watcher = await watch()
    publish_document(redis_client, make_config(version=5), prefix=key_prefix)
    await watcher.wait_for_version(5, timeout=TIMEOUT)
    # A Redis restored from an old backup: the pointer names an older version.
    redis_client.set(keys.config(3), canonical_json(make_config(version=3, topics=["x.y"], bare=True)))
    redis_client.set(keys.config_latest, "3")
    assert await watcher.sync() is False
    assert watcher.version == 5 and watcher.last_error is None


async def test_a_latest_below_the_version_held_is_logged_once_with_both_versions(watch, redis_client, key_prefix,
                                                                                  keys, caplog) -> None:
    watcher = await watch()
    publish_document(redis_client, make_config(version=5), prefix=key_prefix)
    await watcher.wait_for_version(5, timeout=TIMEOUT)
    caplog.set_level("WARNING", logger=watcher_module.__name__)
    redis_client.set(keys.config_latest, "3")
    for _ in range(5):
        assert await watcher.sync() is False
    behind = [r.getMessage() for r in caplog.records if "below version" in r.getMessage()]
    assert behind == [f"{keys.config_latest} announces version 3, below version 5 held here (a Redis restored "
                      "from an older backup?); keeping version 5 until a newer one is announced"]
    # Back in step, then behind again: said again, once.
    redis_client.set(keys.config_latest, "5")
    assert await watcher.sync() is False
    redis_client.set(keys.config_latest, "4")
    for _ in range(5):
        assert await watcher.sync() is False
    assert len([r for r in caplog.records if "below version" in r.getMessage()]) == 2
    assert watcher.version == 5 and watcher.last_error is None


# --------------------------------------------------------------------------------------------
# Refusing


async def _refused(watcher: ConfigWatcher, version: int) -> str:
    await watcher.wait_until(
        lambda: watcher.last_error is not None and f"config version {version} refused" in watcher.last_error,
        timeout=TIMEOUT,
    )
    assert watcher.last_error is not None
    return watcher.last_error


async def test_a_bad_checksum_is_refused_and_the_previous_version_stays(watch, redis_client, key_prefix) -> None:
    applied = Applied()
    watcher = await watch(on_apply=applied)
    first = make_config(version=1)
    publish_document(redis_client, first, prefix=key_prefix)
    await watcher.wait_for_version(1, timeout=TIMEOUT)

    tampered = make_config(version=2)
    tampered["topics"][0]["retention"]["max_length"] = 1
    publish_document(redis_client, tampered, prefix=key_prefix, check=False)
    error = await _refused(watcher, 2)

    assert "checksum:" in error and "does not match the content" in error
    assert "keeping version 1" in error
    assert watcher.current == first and watcher.version == 1
    assert applied.versions == [1]

    # The portal's fix arrives as a newer version, and clears the error.
    publish_document(redis_client, make_config(version=3), prefix=key_prefix)
    await watcher.wait_for_version(3, timeout=TIMEOUT)
    assert watcher.last_error is None
    assert applied.versions == [1, 3]


async def test_a_document_failing_the_schema_is_refused_with_its_path(watch, redis_client, key_prefix) -> None:
    watcher = await watch()
    publish_document(redis_client, make_config(version=1), prefix=key_prefix)
    await watcher.wait_for_version(1, timeout=TIMEOUT)

    bad = make_config(version=2, topics=[topic("Orders Created")], bare=True)
    publish_document(redis_client, bad, prefix=key_prefix, check=False)
    error = await _refused(watcher, 2)

    assert "topics[0].name: 'Orders Created' does not match" in error
    assert watcher.version == 1


async def test_a_snapshot_that_is_not_json_is_refused(watch, redis_client, keys) -> None:
    watcher = await watch()
    redis_client.set(keys.config(1), b"{not json")
    redis_client.set(keys.config_latest, "1")
    error = await _refused(watcher, 1)
    assert f"{keys.config(1)} is not valid JSON" in error
    assert watcher.current is None


async def test_a_pointer_that_is_not_a_version_is_reported(watch, redis_client, keys) -> None:
    watcher = await watch()
    redis_client.set(keys.config_latest, "seventeen")
    await watcher.wait_until(lambda: watcher.last_error is not None, timeout=TIMEOUT)
    assert watcher.last_error == (
        f"config pointer refused: {keys.config_latest} holds b'seventeen', not a version number; "
        "keeping version none"
    )


async def test_a_snapshot_holding_another_version_is_refused(watch, redis_client, keys) -> None:
    watcher = await watch()
    redis_client.set(keys.config(2), canonical_json(make_config(version=1)))
    redis_client.set(keys.config_latest, "2")
    error = await _refused(watcher, 2)
    assert f"version: {keys.config(2)} holds version 1" in error


async def test_a_refused_version_is_not_fetched_again(watch, redis_client, key_prefix, keys, monkeypatch) -> None:
    parsed: list[str] = []
    original = watcher_module.parse_document

    def counting_parse(data: bytes, *, source: str = "document") -> dict[str, Any]:
        parsed.append(source)
        return original(data, source=source)

    monkeypatch.setattr(watcher_module, "parse_document", counting_parse)
    watcher = await watch(poll_interval=0.01)
    bad = make_config(version=1)
    bad["checksum"] = "0" * 64
    publish_document(redis_client, bad, prefix=key_prefix, check=False)
    await _refused(watcher, 1)
    for _ in range(20):
        assert await watcher.sync() is False
    assert parsed == [keys.config(1)]


async def _monitored(url: str, commands: list[list[str]]) -> None:
    """Record every command the Redis at ``url`` runs (MONITOR), as lists of words."""
    async with redis.asyncio.Redis.from_url(url).monitor() as monitor:
        commands.append(["MONITOR started"])
        while True:
            commands.append((await monitor.next_command())["command"].split(" "))


async def test_a_snapshot_over_the_size_limit_is_refused_unread_and_the_heartbeat_says_so(
    watch, private_redis, key_prefix, keys, heartbeaters
) -> None:
    private_redis.start()
    client = redis.Redis.from_url(private_redis.url)
    publish_document(client, make_config(version=1), prefix=key_prefix)
    watcher = await watch(url=private_redis.url, max_document_bytes=64 * 1024)
    await watcher.wait_for_version(1, timeout=TIMEOUT)
    commands: list[list[str]] = []
    monitor = asyncio.create_task(_monitored(private_redis.url, commands))
    await until(lambda: commands != [], what="MONITOR to start")

    big = make_config(version=2, topics=[*make_config()["topics"], *(topic(f"bulk.t{i:04d}") for i in range(1000))])
    size = len(orjson.dumps(big))
    assert size > 64 * 1024
    publish_document(client, big, prefix=key_prefix)
    error = await _refused(watcher, 2)
    monitor.cancel()

    assert error == (f"config version 2 refused: {keys.config(2)} is {size} bytes, over this runtime's limit of "
                     "65536 (--max-config-bytes); keeping version 1")
    assert watcher.version == 1
    # Its length was asked, its bytes never read.
    on_it = [words[0].upper() for words in commands if keys.config(2) in words[1:]]
    assert "STRLEN" in on_it and not {"GET", "GETRANGE", "MGET", "GETEX", "DUMP"} & set(on_it), on_it
    # A refused version is not asked again, however often the watcher looks.
    for _ in range(5):
        assert await watcher.sync() is False

    heartbeater = Heartbeater(private_redis.url, prefix=key_prefix, runtime_id="rt-1", application="billing",
                              watcher=watcher, interval=60)
    heartbeaters.append(heartbeater)
    await heartbeater.beat()
    beat = _beats(client, keys)[-1]
    assert beat["config_version"] == "1" and "over this runtime's limit of 65536" in beat["error"]
    client.close()


async def test_patches_over_the_size_limit_give_way_to_the_snapshot(watch, redis_client, key_prefix, keys,
                                                                   caplog) -> None:
    first = make_config(version=1)
    second = make_config(version=2, topics=[*first["topics"], topic("bulk.extra")])
    watcher = await watch(max_document_bytes=len(orjson.dumps(second)))
    publish_document(redis_client, first, prefix=key_prefix)
    await watcher.wait_for_version(1, timeout=TIMEOUT)
    # The patch is made long on purpose (it may be: only the snapshot's content is checked whole).
    patch = make_patch(first, second)
    patch["padding"] = "x" * len(orjson.dumps(second))
    caplog.set_level("WARNING", logger=watcher_module.__name__)
    publish_document(redis_client, second, prefix=key_prefix, patch=patch)
    await watcher.wait_for_version(2, timeout=TIMEOUT)
    assert any("config patches 2..2 not read" in r.getMessage() for r in caplog.records)


async def test_a_version_the_runtime_cannot_apply_is_refused_then_retried_later(
    watch, redis_client, key_prefix
) -> None:
    applied = Applied()
    applied.refuse = {2}
    watcher = await watch(on_apply=applied, poll_interval=0.01)
    publish_document(redis_client, make_config(version=1), prefix=key_prefix)
    await watcher.wait_for_version(1, timeout=TIMEOUT)
    publish_document(redis_client, make_config(version=2), prefix=key_prefix)
    error = await _refused(watcher, 2)
    assert "the runtime could not apply it: RuntimeError('store unavailable while applying 2')" in error
    assert watcher.version == 1

    # Not in a busy loop: polls every 10 ms, yet the next attempt waits for a backoff (2 s).
    for _ in range(20):
        assert await watcher.sync() is False
    # The cause may pass (a store back up), so the version is tried again after the backoff.
    applied.refuse = set()
    await watcher.wait_for_version(2, timeout=TIMEOUT)
    assert watcher.last_error is None
    assert applied.versions == [1, 2]


# --------------------------------------------------------------------------------------------
# The cache, and Redis being away


async def test_it_caches_the_applied_document_atomically(watch, redis_client, key_prefix, tmp_path) -> None:
    cache = tmp_path / "state" / "meshconfig.json"
    watcher = await watch(cache_path=cache)
    doc = make_config(version=6)
    publish_document(redis_client, doc, prefix=key_prefix)
    await watcher.wait_for_version(6, timeout=TIMEOUT)
    await until(lambda: cache.exists(), what="the cache file")
    assert load_file(cache) == doc
    assert [path.name for path in cache.parent.iterdir()] == ["meshconfig.json"]  # no temp file left


async def test_a_refused_document_does_not_replace_the_cache(watch, redis_client, key_prefix, tmp_path) -> None:
    cache = tmp_path / "meshconfig.json"
    watcher = await watch(cache_path=cache)
    publish_document(redis_client, make_config(version=1), prefix=key_prefix)
    await watcher.wait_for_version(1, timeout=TIMEOUT)
    bad = make_config(version=2)
    bad["format"] = 2
    publish_document(redis_client, bad, prefix=key_prefix, check=False)
    await _refused(watcher, 2)
    assert load_file(cache)["version"] == 1


async def test_a_restart_without_redis_starts_from_the_cache(watch, redis_client, key_prefix, tmp_path) -> None:
    cache = tmp_path / "meshconfig.json"
    first = await watch(cache_path=cache)
    doc = make_config(version=9)
    publish_document(redis_client, doc, prefix=key_prefix)
    await first.wait_for_version(9, timeout=TIMEOUT)
    await first.stop()

    applied = Applied()
    closed = f"redis://127.0.0.1:{free_port()}/0"
    second = await watch(url=closed, cache_path=cache, on_apply=applied)
    # Applied before start() returned: a runtime can serve at once.
    assert second.current == doc and applied.versions == [9]
    await until(lambda: not second.redis_reachable, what="the watcher to notice Redis is away")
    assert second.version == 9 and second.last_error is None


async def test_a_damaged_cache_is_reported_and_not_applied(watch, tmp_path) -> None:
    cache = tmp_path / "meshconfig.json"
    doc = make_config(version=2)
    doc["applications"][0]["team"] = "edited-by-hand"
    cache.write_bytes(canonical_json(doc))
    watcher = await watch(url=f"redis://127.0.0.1:{free_port()}/0", cache_path=cache)
    assert watcher.current is None
    assert watcher.last_error is not None
    assert watcher.last_error.startswith(f"cached config {cache} not used: checksum: ")


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    yield server
    server.stop()


async def test_it_waits_for_redis_to_come_up_and_then_applies(watch, private_redis, key_prefix) -> None:
    applied = Applied()
    watcher = await watch(url=private_redis.url, on_apply=applied, poll_interval=600)
    await until(lambda: not watcher.redis_reachable, what="the watcher to notice Redis is away")

    private_redis.start()
    client = redis.Redis.from_url(private_redis.url)
    publish_document(client, make_config(version=1), prefix=key_prefix)
    # Reconnecting (with backoff, at most 0.5 s here) subscribes and looks at latest at once.
    await watcher.wait_for_version(1, timeout=TIMEOUT)
    assert applied.versions == [1]

    # Redis restarts empty; the watcher reconnects and takes the next version.
    private_redis.stop()
    await until(lambda: not watcher.redis_reachable, what="the watcher to notice the restart")
    private_redis.start()
    publish_document(redis.Redis.from_url(private_redis.url), make_config(version=2), prefix=key_prefix)
    await watcher.wait_for_version(2, timeout=TIMEOUT)
    assert applied.versions == [1, 2]


async def test_stop_is_clean_and_idempotent(watch) -> None:
    watcher = await watch(url=f"redis://127.0.0.1:{free_port()}/0")
    tasks = list(watcher._tasks)
    await watcher.stop()
    assert all(task.done() for task in tasks)
    await watcher.stop()


# --------------------------------------------------------------------------------------------
# Heartbeats


def _beats(client: redis.Redis, keys: KeySpace) -> list[dict[str, str]]:
    return [
        {key.decode(): value.decode() for key, value in fields.items()}
        for _id, fields in client.xrange(keys.runtimes)
    ]


@pytest.fixture
async def heartbeaters() -> AsyncIterator[list[Heartbeater]]:
    started: list[Heartbeater] = []
    yield started
    for heartbeater in started:
        await heartbeater.stop()


async def test_heartbeats_carry_the_applied_version(watch, redis_url, redis_client, key_prefix, keys,
                                                    heartbeaters) -> None:
    watcher = await watch()
    doc = make_config(version=3)
    publish_document(redis_client, doc, prefix=key_prefix)
    await watcher.wait_for_version(3, timeout=TIMEOUT)

    heartbeater = Heartbeater(
        redis_url,
        prefix=key_prefix,
        runtime_id="rt-1",
        application="billing",
        watcher=watcher,
        counters=lambda: {"published": 12, "refused": 1},
        interval=0.05,
        journey_sample_rate=0.25,
        journey_ttl_seconds=3600,
        metrics_url=lambda: "http://10.0.0.7:8700/metrics",
    )
    heartbeaters.append(heartbeater)
    await heartbeater.start()
    await until(lambda: len(_beats(redis_client, keys)) >= 2, what="two heartbeats")

    beat = _beats(redis_client, keys)[-1]
    assert set(beat) == {
        "runtime_id",
        "application",
        "host",
        "pid",
        "software_version",
        "config_version",
        "config_checksum",
        "error",
        "counters",
        "metrics_url",
        "stores",
        "started_at",
        "sent_at",
        "journey_sample_rate",
        "journey_ttl_seconds",
        "held",
        "max_config_bytes",
    }
    assert beat["stores"] == "{}"  # a runtime reports its stores (see Runtime.refresh_store_report)
    assert beat["held"] == "{}"  # no subscription held by the access policy (see test_delivery_access)
    assert beat["runtime_id"] == "rt-1" and beat["application"] == "billing"
    assert beat["host"] == socket.gethostname() and beat["pid"] == str(os.getpid())
    assert beat["software_version"]
    assert beat["config_version"] == "3" and beat["config_checksum"] == doc["checksum"]
    assert beat["error"] == ""
    assert json.loads(beat["counters"]) == {"published": 12, "refused": 1}
    assert (beat["journey_sample_rate"], beat["journey_ttl_seconds"]) == ("0.25", "3600")
    assert beat["metrics_url"] == "http://10.0.0.7:8700/metrics"
    started, sent = (datetime.fromisoformat(beat[name]) for name in ("started_at", "sent_at"))
    assert started.tzinfo is not None and started <= sent

    # A refused document shows up in the next beats, with the version still in force.
    bad = make_config(version=4)
    bad["checksum"] = "f" * 64
    publish_document(redis_client, bad, prefix=key_prefix, check=False)
    await _refused(watcher, 4)
    await until(lambda: _beats(redis_client, keys)[-1]["error"] != "", what="a beat with the error")
    beat = _beats(redis_client, keys)[-1]
    assert "config version 4 refused: checksum:" in beat["error"]
    assert beat["config_version"] == "3"


async def test_a_gateway_beats_without_application_or_config(redis_url, redis_client, key_prefix, keys) -> None:
    heartbeater = Heartbeater(redis_url, prefix=key_prefix, application=None, watcher=None)
    try:
        await heartbeater.beat()
    finally:
        await heartbeater.stop()
    (beat,) = _beats(redis_client, keys)
    assert beat["application"] == "" and beat["config_version"] == "" and beat["config_checksum"] == ""
    assert beat["counters"] == "{}" and beat["metrics_url"] == ""
    assert beat["journey_sample_rate"] == "" and beat["journey_ttl_seconds"] == ""  # not told: not reported
    assert beat["max_config_bytes"] == ""  # not told: not reported
    assert beat["runtime_id"].startswith(f"{socket.gethostname()}-{os.getpid()}-")


async def test_broken_counters_still_beat_and_say_why(redis_url, redis_client, key_prefix, keys) -> None:
    def counters() -> dict[str, Any]:
        raise ZeroDivisionError("division by zero")

    heartbeater = Heartbeater(redis_url, prefix=key_prefix, counters=counters)
    try:
        await heartbeater.beat()
    finally:
        await heartbeater.stop()
    (beat,) = _beats(redis_client, keys)
    assert beat["counters"] == "{}"
    assert beat["journey_sample_rate"] == "" and beat["journey_ttl_seconds"] == ""  # not told: not reported
    assert beat["error"] == "counters unavailable: ZeroDivisionError('division by zero')"


async def test_heartbeats_survive_redis_being_away(private_redis, key_prefix, keys, heartbeaters) -> None:
    heartbeater = Heartbeater(private_redis.url, prefix=key_prefix, runtime_id="rt-9", interval=0.05)
    heartbeaters.append(heartbeater)
    await heartbeater.start()
    await until(lambda: not heartbeater.redis_reachable, what="a failed beat")
    assert heartbeater._task is not None and not heartbeater._task.done()

    private_redis.start()
    client = redis.Redis.from_url(private_redis.url)
    await until(lambda: len(client.xrange(keys.runtimes)) >= 1, what="a beat after Redis came up")
    # The entry is visible before the heartbeater has read Redis's reply, hence a wait.
    await until(lambda: heartbeater.redis_reachable, what="the heartbeater to see Redis back")


def test_default_runtime_ids_name_the_host_and_process_and_differ() -> None:
    ids = {default_runtime_id() for _ in range(20)}
    assert len(ids) > 1
    for runtime_id in ids:
        host, pid, suffix = runtime_id.rsplit("-", 2)
        assert host == socket.gethostname() and pid == str(os.getpid())
        assert len(suffix) == 4 and int(suffix, 16) >= 0


async def test_the_stream_is_capped_near_ten_thousand(redis_url, redis_client, key_prefix, keys) -> None:
    from meshruntime.heartbeat import STREAM_MAXLEN

    stream = keys.runtimes
    heartbeater = Heartbeater(redis_url, prefix=key_prefix)
    pipe = redis_client.pipeline(transaction=False)
    for _ in range(STREAM_MAXLEN + 3000):
        pipe.xadd(stream, {"filler": "1"})
    pipe.execute()
    try:
        await heartbeater.beat()
    finally:
        await heartbeater.stop()
    # MAXLEN ~ trims whole stream nodes (100 entries by default), so it stops a little above.
    assert STREAM_MAXLEN <= redis_client.xlen(stream) < STREAM_MAXLEN + 200


async def test_beat_soon_sends_the_next_beat_without_waiting_for_the_interval(redis_url, redis_client, key_prefix,
                                                                               keys, heartbeaters) -> None:
    """A runtime that starts listening tells the portal its metrics URL at once, not a beat later."""
    url = ""
    heartbeater = Heartbeater(redis_url, prefix=key_prefix, application="billing", interval=3600,
                              metrics_url=lambda: url)
    heartbeaters.append(heartbeater)
    await heartbeater.start()
    await until(lambda: len(_beats(redis_client, keys)) == 1, what="the first heartbeat")
    url = "http://127.0.0.1:8701/metrics"
    heartbeater.beat_soon()
    await until(lambda: len(_beats(redis_client, keys)) == 2, what="a second heartbeat, an hour early")
    assert _beats(redis_client, keys)[-1]["metrics_url"] == url
