"""End to end: a real Celery worker (a subprocess, not eager mode), the real Redis, and
ConfigWatchers running in this test. Every wait is for a condition, with a bound.

The worker must see the test's database: on PostgreSQL that is the test database itself; on
SQLite (in memory under pytest-django) the ``shared_database`` fixture moves the test onto a
file copy for its duration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from governance.models import AccessRule, RoutingRule
from meshruntime.config import compute_checksum, seal
from meshruntime.config_publish import publish_document
from meshruntime.config_watcher import ConfigWatcher
from meshruntime.heartbeat import Heartbeater
from rollout.compiler import compile_mesh_config
from rollout.models import ConfigVersion, Runtime
from rollout.registry import HeartbeatIngester
from tests.e2e.conftest import chromium, log_in
from tests.portal_support.live_portal import ROOT, uvicorn_portal
from tests.portal_support.mesh import build_mesh
from tests.portal_support.personas import client_for
from tests.portal_support.waiting import Loop, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

@pytest.fixture
def worker(shared_database, settings, redis_url, mesh_redis):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "meshadmin.settings.test", "DATABASE_URL": shared_database,
           "REDIS_URL": redis_url, "MESH_KEY_PREFIX": settings.MESH_KEY_PREFIX,
           "MESH_PUSH_QUEUE": settings.MESH_PUSH_QUEUE}
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "meshadmin", "worker", "--pool=solo", "--without-heartbeat",
         "--without-gossip", "--without-mingle", "-Q", settings.MESH_PUSH_QUEUE, "-l", "info",
         "-n", f"e2e-{settings.MESH_KEY_PREFIX.strip(':')}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    yield process
    process.terminate()
    output, _ = process.communicate(timeout=30)
    if os.environ.get("E2E_WORKER_LOG"):
        print(output)


@pytest.fixture
def loop():
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture
def watch(loop, redis_url, settings, tmp_path):
    """``watch(name)`` starts a ConfigWatcher (with a cache file of its own) and a Heartbeater for it."""
    started = []

    def start(name: str, url: str | None = None) -> ConfigWatcher:
        watcher = ConfigWatcher(url or redis_url, prefix=settings.MESH_KEY_PREFIX, poll_interval=1.0,
                                cache_path=tmp_path / f"{name}.json", reconnect_max_delay=1.0)
        beater = Heartbeater(url or redis_url, prefix=settings.MESH_KEY_PREFIX, runtime_id=name, application=name,
                             watcher=watcher, interval=0.2)
        loop.run(watcher.start())
        loop.run(beater.start())
        started.append((watcher, beater))
        return watcher

    yield start
    for watcher, beater in started:
        loop.run(beater.stop())
        loop.run(watcher.stop())


def rule_actions(watcher: ConfigWatcher, rule_id: str) -> list[str] | None:
    doc = watcher.current
    if doc is None:
        return None
    return next((r["actions"] for r in doc["access_rules"] if r["id"] == rule_id), None)


def idle(client, prefix: str) -> bool:
    return not client.exists(f"{prefix}push:pending") and not client.exists(f"{prefix}push:lock")


def test_an_access_rule_change_is_applied_by_a_watcher_through_a_real_worker(worker, watch, mesh_redis, settings):
    mesh = build_mesh()  # committed: the commit hook enqueues the first push
    watcher = watch("billing")
    wait_for(lambda: watcher.version is not None, 60, "the first version to reach the watcher")
    rule = mesh.rules["billing-publish"]
    assert rule_actions(watcher, rule.rule_id) == ["publish"]

    rule.subscribe = True
    started = time.monotonic()
    rule.save()
    wait_for(lambda: rule_actions(watcher, rule.rule_id) == ["publish", "subscribe"], 15,
             "the changed rule to be applied")
    elapsed = time.monotonic() - started
    latest = ConfigVersion.objects.order_by("-version").first()
    assert watcher.version == latest.version and watcher.checksum == latest.checksum
    assert latest.diff["access_rules"]["changed"][0]["id"] == rule.rule_id
    assert elapsed < 10, elapsed


def test_a_bad_document_is_refused_the_previous_stays_and_the_portal_shows_it(worker, watch, mesh_redis,
                                                                              settings, personas):
    prefix = settings.MESH_KEY_PREFIX
    mesh = build_mesh()
    watcher = watch("billing")
    good = wait_for(lambda: watcher.current, 60, "the first version")
    ingester = HeartbeatIngester(mesh_redis, consumer="e2e", block_ms=50)
    ingester.ensure_group()

    def runtime_error() -> str:
        ingester.step()
        runtime = Runtime.objects.filter(runtime_id="billing").first()
        return runtime.last_error if runtime else ""

    # A snapshot whose content does not match its checksum (tampered, or corrupted on the way).
    tampered = {**seal(good, good["version"] + 1), "topics": []}
    publish_document(mesh_redis, tampered, prefix, check=False)
    error = wait_for(runtime_error, 15, "the runtime to report the refusal")
    assert "checksum" in error and f"keeping version {good['version']}" in error
    assert watcher.version == good["version"]
    html = client_for(personas["carol"]).get("/runtimes/").content.decode()
    assert "checksum" in html and "error" in html

    # A snapshot that breaks the schema is refused the same way.
    broken = seal({k: v for k, v in good.items() if k != "stores"}, good["version"] + 2)
    publish_document(mesh_redis, broken, prefix, check=False)
    wait_for(lambda: "stores" in runtime_error(), 15, "the schema refusal")
    assert watcher.version == good["version"]

    # The portal's next version goes past the refused ones and is applied; the error clears.
    RoutingRule.objects.get(pk=mesh.routes["audit"].pk).save()  # a change without effect ...
    mesh.rules["nobody-audit"].description = "fixed"
    mesh.rules["nobody-audit"].save()  # ... and one with
    wait_for(lambda: watcher.version and watcher.version > good["version"] + 2, 15, "the next good version")
    wait_for(lambda: runtime_error() == "", 15, "the error to clear")
    assert Runtime.objects.get(runtime_id="billing").sync_with(watcher.version) == Runtime.IN_SYNC


def test_a_watcher_restarted_while_redis_is_down_starts_from_its_cache(worker, watch, loop, mesh_redis):
    build_mesh()
    watcher = watch("billing")
    applied = wait_for(lambda: watcher.current, 60, "the first version")
    wait_for(lambda: (Path(watcher.cache_path).exists()), 5, "the cache file")
    loop.run(watcher.stop())

    # Nothing listens on port 1: Redis is "down" for the restarted watcher.
    restarted = ConfigWatcher("redis://127.0.0.1:1/0", prefix="unused:", cache_path=watcher.cache_path)
    loop.run(restarted.start())
    try:
        assert restarted.version == applied["version"] and restarted.checksum == applied["checksum"]
        assert restarted.current == applied
    finally:
        loop.run(restarted.stop())


def test_five_hundred_changes_coalesce_and_the_last_version_is_a_fresh_compile(worker, watch, mesh_redis,
                                                                               settings):
    prefix = settings.MESH_KEY_PREFIX
    mesh = build_mesh()
    watcher = watch("billing")
    wait_for(lambda: watcher.version is not None, 60, "the first version")
    wait_for(lambda: idle(mesh_redis, prefix), 15, "the first push to finish")
    before = ConfigVersion.objects.count()

    rule = AccessRule.objects.get(pk=mesh.rules["billing-publish"].pk)
    started = time.monotonic()
    for i in range(500):
        rule.description = f"change {i}"
        rule.save()  # each its own transaction
    burst = time.monotonic() - started

    def converged():
        latest = ConfigVersion.objects.order_by("-version").first()
        return idle(mesh_redis, prefix) and latest.checksum == compute_checksum(compile_mesh_config()) and latest

    latest = wait_for(converged, 30, "the last version to hold the final state")
    wait_for(lambda: watcher.version == latest.version, 15, "the watcher to apply it")
    fresh = compile_mesh_config()
    assert {k: v for k, v in watcher.current.items() if k not in ("version", "checksum", "generated_at")} == fresh
    assert rule_actions(watcher, rule.rule_id) == ["publish"]
    assert next(r for r in watcher.current["access_rules"] if r["id"] == rule.rule_id)["description"] == "change 499"
    versions = ConfigVersion.objects.count() - before
    # A handful: the first change goes at once, then one version per burst delay at most.
    delay = settings.MESH_PUSH_BURST_DELAY_MS / 1000
    assert 1 <= versions <= max(5, int(burst / delay) + 2), (versions, burst)
    recorded = sum(len(v.changes) for v in ConfigVersion.objects.filter(version__gt=latest.version - versions))
    assert recorded == 500  # every change is accounted for in exactly one version
    print(f"500 changes in {burst:.2f} s -> {versions} versions; latest {latest.version} at "
          f"{timezone.now():%H:%M:%S}")


# The runtimes and version pages in a real browser, served by uvicorn (ASGI: pages and websockets)


@pytest.fixture
def portal(shared_database, settings, redis_url, mesh_redis):
    """The portal under uvicorn, on this test's database and key prefix."""
    with uvicorn_portal(shared_database, redis_url, settings.MESH_KEY_PREFIX) as url:
        yield url


@pytest.fixture
def chromium_page(portal):
    with chromium() as browser:
        context = browser.new_context(base_url=portal)
        context.set_default_timeout(15_000)
        yield context.new_page()


def off_the_loop(function):
    """Run ``function`` in another thread: Playwright's loop runs in this one, and a push (or
    an ingester step) sends to the channel layer through ``async_to_sync``."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    def run():
        try:
            return function()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result(60)


@pytest.mark.browser
def test_the_runtimes_and_version_pages_follow_heartbeats_and_pushes_live(sam, chromium_page, mesh_redis,
                                                                           monkeypatch):
    from django.db import connections

    # Playwright's sync API runs an event loop in this thread; the ORM calls run synchronously in
    # another one (off_the_loop), on a connection made from the shared database's settings. (On
    # SQLite this thread's connection may still be the in-memory test database that the portal
    # process cannot see, when an earlier test's live server shares it.) All are closed at the
    # end, else PostgreSQL keeps the test database.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    try:
        check_pages_live(chromium_page, mesh_redis)
    finally:
        connections.close_all()


def check_pages_live(page, client) -> None:
    from rollout import push
    from tests.rollout.test_registry import beat

    mesh = off_the_loop(build_mesh)
    off_the_loop(push.push)
    ingester = HeartbeatIngester(client, consumer="browser", block_ms=50)
    ingester.ensure_group()

    log_in(page, "sam")
    page.goto("/runtimes/")
    page.wait_for_selector("#live-status:text('live')")

    # A runtime appears, in sync, without a reload.
    beat(client, "billing-1", config_version="1")
    off_the_loop(ingester.step)
    page.wait_for_selector("tr[data-runtime-id='billing-1'][data-sync='in_sync']")
    assert page.inner_text("#count-in-sync") == "1"

    # A new version: the row turns "behind" as soon as it is published.
    rule = mesh.rules["billing-publish"]
    rule.subscribe = True
    off_the_loop(rule.save)
    assert off_the_loop(push.push).version == 2
    page.wait_for_selector("tr[data-runtime-id='billing-1'][data-sync='behind']")
    assert "1 / 2" in page.inner_text("tr[data-runtime-id='billing-1']")

    # The version page shows the runtime converging, then converged.
    version = off_the_loop(lambda: ConfigVersion.objects.get(version=2))
    page.goto(version.get_absolute_url())
    page.wait_for_selector("#live-status:text('live')")
    assert page.inner_text("#applied-count") == "0"
    assert rule.rule_id in page.inner_text("[data-testid=version-diff]")
    beat(client, "billing-1", config_version="2")
    off_the_loop(ingester.step)
    page.wait_for_function("() => document.getElementById('applied-count').textContent === '1'")
    assert "applied" in page.inner_text("tr[data-runtime-id='billing-1']")

    # Silent for a month: the portal forgets it, and the runtimes page drops the row live.
    page.goto("/runtimes/")
    page.wait_for_selector("#live-status:text('live')")
    page.wait_for_selector("tr[data-runtime-id='billing-1']")
    off_the_loop(lambda: Runtime.objects.update(last_seen=timezone.now() - timedelta(days=30)))
    off_the_loop(ingester.sweep)
    page.wait_for_selector("tr[data-runtime-id='billing-1']", state="detached")
    assert page.inner_text("#count-in-sync") == "0"
