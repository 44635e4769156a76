"""Prometheus finds the runtimes through the portal: the service discovery endpoint, the portal's
own ``/metrics``, and a real Prometheus scraping real runtimes that start and stop."""

from __future__ import annotations

import json
import urllib.request
from datetime import timedelta

import orjson
import pytest
from django.test import Client
from django.utils import timezone

from meshadmin.models import APIToken
from rollout import push_stats
from rollout.models import Runtime
from tests.meshruntime.factories import make_config
from tests.portal_support.live_portal import uvicorn_portal
from tests.portal_support.personas import client_for
from tests.portal_support.runtimes import RuntimeProcess
from tests.portal_support.scraping import ingesting, make_token, targets
from tests.portal_support.waiting import wait_for
from tracing.prometheus_config import render

URL = "/api/v1/prometheus/targets/"


def runtime(runtime_id: str, *, application: str = "billing", url: str = "http://10.0.0.7:8700/metrics",
            seen: timedelta = timedelta(0), version: str = "0.1.0") -> Runtime:
    return Runtime.objects.create(runtime_id=runtime_id, application=application, metrics_url=url,
                                  software_version=version, last_seen=timezone.now() - seen)


# -- the endpoint -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_discovery_lists_live_runtimes_with_their_labels_and_the_portal(personas, settings):
    settings.MESH_RUNTIME_GONE_SECONDS = 600
    settings.ALLOWED_HOSTS = ["portal.internal"]
    runtime("billing-1")
    runtime("gw-1", application="", url="https://gw.internal:9443/metrics")
    runtime("stale-1", seen=timedelta(seconds=120))  # stale still counts: Prometheus shows it down
    runtime("gone-1", seen=timedelta(seconds=601))
    runtime("silent-1", url="")  # never said where it is scraped
    key = make_token(personas["dave"])
    response = Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_HOST="portal.internal:8000")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    groups = response.json()
    assert groups == [
        {"targets": ["10.0.0.7:8700"], "labels": {
            "__scheme__": "http", "__metrics_path__": "/metrics", "mesh_kind": "sidecar",
            "mesh_runtime_id": "billing-1", "mesh_application": "billing", "mesh_software_version": "0.1.0"}},
        {"targets": ["gw.internal:9443"], "labels": {
            "__scheme__": "https", "__metrics_path__": "/metrics", "mesh_kind": "gateway",
            "mesh_runtime_id": "gw-1", "mesh_application": "", "mesh_software_version": "0.1.0"}},
        {"targets": ["10.0.0.7:8700"], "labels": {
            "__scheme__": "http", "__metrics_path__": "/metrics", "mesh_kind": "sidecar",
            "mesh_runtime_id": "stale-1", "mesh_application": "billing", "mesh_software_version": "0.1.0"}},
        {"targets": ["portal.internal:8000"], "labels": {
            "__scheme__": "http", "__metrics_path__": "/metrics", "mesh_kind": "portal",
            "mesh_software_version": groups[-1]["labels"]["mesh_software_version"]}},
    ]


@pytest.mark.django_db
def test_kind_lists_only_runtimes_or_only_the_portal_and_anything_else_is_a_clear_400(personas, settings):
    runtime("billing-1")
    settings.MESH_PORTAL_METRICS_URL = "https://portal.example.com/metrics"
    client = client_for(personas["carol"])  # a session works as well as a token
    assert [g["labels"]["mesh_kind"] for g in client.get(URL, {"kind": "runtime"}).json()] == ["sidecar"]
    [portal] = client.get(URL, {"kind": "portal"}).json()
    assert portal["targets"] == ["portal.example.com:443"] and portal["labels"]["__scheme__"] == "https"
    response = client.get(URL, {"kind": "pods"})
    assert response.status_code == 400
    assert response.json()["kind"] == ["must be one of runtime, portal, not 'pods'"]


@pytest.mark.django_db
def test_every_persona_gets_the_same_list_and_strangers_get_401(personas, client):
    runtime("billing-1")
    lists = {name: client_for(user).get(URL, {"kind": "runtime"}).json() for name, user in personas.items()}
    assert all(found == lists["sam"] for found in lists.values()) and len(lists["sam"]) == 1
    assert client.get(URL).status_code == 401
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer mat_nope_nope").status_code == 401
    expired = APIToken(user=personas["bob"], expires=timezone.now() - timedelta(seconds=1))
    key = expired.generate()
    expired.save()
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 401
    # Prometheus's default scheme is Bearer; the project's own Token works too
    key = make_token(personas["bob"])
    assert client.get(URL, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200


# -- the portal's /metrics --------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_portal_metrics_need_a_token_and_show_pushes_versions_and_runtimes(personas, client, mesh_prefix):
    runtime("billing-1")
    runtime("gone-1", seen=timedelta(days=1))
    push_stats.record("push", "published", 0.2)
    push_stats.record("push", "published", 0.03)
    push_stats.record("rollback", "failed", 40)
    assert client.get("/metrics").status_code == 401  # not a redirect to the login page
    key = make_token(personas["carol"])
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'meshadmin_config_pushes_total{kind="push",outcome="published"} 2.0' in text
    assert 'meshadmin_config_pushes_total{kind="rollback",outcome="failed"} 1.0' in text
    assert 'meshadmin_config_push_duration_seconds_bucket{le="0.05"} 1.0' in text
    assert 'meshadmin_config_push_duration_seconds_bucket{le="0.25"} 2.0' in text
    assert 'meshadmin_config_push_duration_seconds_bucket{le="+Inf"} 3.0' in text
    assert "meshadmin_config_push_duration_seconds_sum 40.23" in text
    assert 'meshadmin_runtimes{state="healthy",sync="unknown"} 1.0' in text
    assert 'meshadmin_runtimes{state="gone",sync="unknown"} 1.0' in text
    assert "meshadmin_config_version 0.0" in text
    for name in ("meshadmin_prometheus_query_seconds", "meshadmin_websocket_viewers", "meshadmin_chart_viewers",
                 "meshadmin_chart_pollers"):
        assert f"# TYPE {name}" in text


# -- a real Prometheus, real runtimes ---------------------------------------------------------------

def discovered(portal: str, key: str) -> list[str]:
    request = urllib.request.Request(f"{portal}{URL}?kind=runtime", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return sorted(g["labels"]["mesh_runtime_id"] for g in json.loads(response.read()))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_prometheus_scrapes_the_runtimes_the_portal_lists_and_follows_them_starting_and_stopping(
        shared_database, settings, mesh_prefix, redis_url, redis_client, start_prometheus, tmp_path, sam):
    settings.MESH_RUNTIME_GONE_SECONDS = 3  # the ingester's sweep (here) and the portal (below) agree
    token_file = tmp_path / "token"
    key = make_token(sam)
    token_file.write_text(key)
    prometheus = start_prometheus(None)
    config = tmp_path / "mesh.json"
    config.write_bytes(orjson.dumps(make_config()))
    common = ["--listen", "127.0.0.1:0", "--store-url", redis_url, "--config-file", str(config), "--prefix",
              mesh_prefix, "--heartbeat-interval", "0.5", "--log-level", "WARNING"]
    started: list[RuntimeProcess] = []
    with uvicorn_portal(shared_database, redis_url, mesh_prefix, MESH_RUNTIME_GONE_SECONDS="3") as portal, \
            ingesting(redis_client):
        prometheus.start(render(portal, token_file, scrape_interval=1))
        try:
            started.append(RuntimeProcess(["--application", "billing", "--runtime-id", "rt-a", *common]))
            found = wait_for(lambda: (t := targets(prometheus)).get("rt-a", {}).get("health") == "up" and t, 30,
                             "Prometheus to scrape rt-a")
            labels = found["rt-a"]["labels"]
            assert labels | {"instance": "x"} == {
                "instance": "x", "job": "mesh-runtimes", "mesh_kind": "sidecar", "mesh_runtime_id": "rt-a",
                "mesh_application": "billing", "mesh_software_version": labels["mesh_software_version"]}
            assert found["rt-a"]["scrapeUrl"] == f"{started[0].url}/metrics"
            # the portal's own /metrics is scraped with the token, as the same discovery lists it
            wait_for(lambda: targets(prometheus).get("portal", {}).get("health") == "up", 30,
                     "Prometheus to scrape the portal")
            # the runtime's series carry the target's labels (and keep their own "application")
            wait_for(lambda: prometheus.query('meshruntime_config_version{mesh_runtime_id="rt-a",'
                                              'mesh_application="billing"} == 1'), 15, "rt-a's config version")

            started.append(RuntimeProcess(["--gateway", "--runtime-id", "rt-b", *common]))
            wait_for(lambda: targets(prometheus).get("rt-b", {}).get("health") == "up", 30, "rt-b scraped")
            assert targets(prometheus)["rt-b"]["labels"]["mesh_kind"] == "gateway"
            assert discovered(portal, key) == ["rt-a", "rt-b"]

            assert started[0].stop() == 0
            wait_for(lambda: discovered(portal, key) == ["rt-b"], 30, "rt-a to leave the list once gone")
            wait_for(lambda: "rt-a" not in targets(prometheus), 30, "Prometheus to drop rt-a")
            assert targets(prometheus)["rt-b"]["health"] == "up"
        finally:
            for process in started:
                process.kill()
