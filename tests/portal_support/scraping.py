"""Prometheus scraping the mesh through the portal's service discovery, for the tests of what the
portal draws from it: an API token for Prometheus (``make_token``), the heartbeat ingester in a
thread (``ingesting``), Prometheus's targets by runtime id (``targets``), and the whole chain at
once with events flowing (``scraped_runtime``).

Use with ``pytest.mark.django_db(transaction=True)``: the processes see only what is committed.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.request
from collections.abc import Callable, Iterator

import orjson
import redis
from django.db import connections

from meshadmin.models import APIToken
from rollout import push
from rollout.registry import HeartbeatIngester
from tests.portal_support.live_portal import uvicorn_portal
from tests.portal_support.prometheus import PrometheusServer
from tests.portal_support.runtimes import RuntimeProcess
from tests.portal_support.waiting import wait_for
from tracing.prometheus_config import render


def make_token(user, *, read_only: bool = True) -> str:
    """A new API token of ``user`` (Prometheus's credential for the discovery and /metrics)."""
    token = APIToken(user=user, description="prometheus", read_only=read_only)
    key = token.generate()
    token.save()
    return key


@contextlib.contextmanager
def ingesting(client: redis.Redis) -> Iterator[HeartbeatIngester]:
    """The heartbeat ingester (``manage.py mesh ingest-heartbeats``) in a thread of this test."""
    ingester = HeartbeatIngester(client, consumer="test", block_ms=100, sweep_seconds=0.5)
    ingester.ensure_group()

    def run():
        try:
            ingester.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield ingester
    finally:
        ingester.stopped = True
        thread.join(10)


def targets(prometheus: PrometheusServer) -> dict[str, dict]:
    """Prometheus's active targets by runtime id (the portal's as "portal")."""
    found = {}
    for target in prometheus.active_targets():
        labels = target["labels"]
        found[labels.get("mesh_runtime_id") or labels["mesh_kind"]] = target
    return found


def runtime_id(runtime: RuntimeProcess) -> str:
    """The id the runtime gave itself (in its /v1/info)."""
    with urllib.request.urlopen(f"{runtime.url}/v1/info", timeout=5) as response:  # noqa: S310
        return orjson.loads(response.read())["runtime"]


@contextlib.contextmanager
def scraped_runtime(*, database: str, redis_url: str, redis_client: redis.Redis, prefix: str,
                    prometheus: PrometheusServer, reader, application: str,
                    publish: Callable[[str, int], object]) -> Iterator[str]:
    """The mesh of the database, live: its configuration pushed, the portal under uvicorn with the
    heartbeat ingester, a runtime process of ``application`` on the pushed document, events
    published through it in a thread (``publish(runtime_url, n)`` for n = 1, 2, … every 0.05 s),
    and ``prometheus`` (not yet started) scraping that runtime, found through the portal's
    discovery with ``reader``'s token. Yields the portal's URL once the runtime is scraped."""
    assert push.push().outcome == "published"
    token_file = prometheus.folder / "token"
    token_file.write_text(make_token(reader))
    stop = threading.Event()
    with uvicorn_portal(database, redis_url, prefix, PROMETHEUS_URL=prometheus.url,
                        PROMETHEUS_SCRAPE_INTERVAL="1") as portal, ingesting(redis_client):
        prometheus.start(render(portal, token_file, scrape_interval=1))
        runtime = RuntimeProcess(["--application", application, "--listen", "127.0.0.1:0", "--store-url", redis_url,
                                  "--config-redis-url", redis_url, "--prefix", prefix, "--heartbeat-interval",
                                  "0.5", "--log-level", "WARNING"])
        publisher = threading.Thread(target=_publishing, args=(publish, runtime.url, stop), daemon=True)
        try:
            wait_for(lambda: urllib.request.urlopen(f"{runtime.url}/readyz", timeout=2).status == 200, 30,  # noqa: S310
                     "the runtime to apply the pushed configuration", interval=0.1)
            publisher.start()
            wait_for(lambda: targets(prometheus).get(runtime_id(runtime), {}).get("health") == "up", 30,
                     "Prometheus to scrape the runtime it found through the portal")
            yield portal
        finally:
            stop.set()
            if publisher.is_alive():
                publisher.join(10)
            runtime.kill()


def _publishing(publish: Callable[[str, int], object], url: str, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        publish(url, n)
        stop.wait(0.05)
