"""The whole chain in a real Chromium: a runtime publishes, Prometheus (found through the portal's
service discovery) scrapes it, the portal's poller asks Prometheus, the Traffic tab draws it."""

from __future__ import annotations

import os
import threading
import urllib.request

import orjson
import pytest

from governance.models import AccessRule, Application, ApplicationKey
from rollout import push
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.portal_support.live_portal import uvicorn_portal
from tests.portal_support.personas import PASSWORD
from tests.portal_support.runtimes import RuntimeProcess
from tests.portal_support.waiting import wait_for
from topics.models import Topic
from tracing.prometheus_config import render

from .test_discovery import ingesting, make_token, targets

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _publisher(url: str, key: str, stop: threading.Event, sent: list[int]) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        body = orjson.dumps({"specversion": "1.0", "id": f"evt-{n}", "source": "/test", "type": "com.example.order",
                             "datacontenttype": "application/json", "data": {"order_id": str(n)}})
        request = urllib.request.Request(f"{url}/v1/topics/orders.created/events", data=body, method="POST", headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/cloudevents+json"})
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            assert response.status == 202
        sent.append(n)
        stop.wait(0.05)


def test_the_traffic_tab_shows_the_rate_of_events_just_published(
        shared_database, settings, mesh_prefix, redis_url, redis_client, start_prometheus, tmp_path, store,
        payments, bob, sam):
    from playwright.sync_api import sync_playwright

    topic = Topic.objects.create(name="orders.created", team=payments, store=store)
    billing = Application.objects.create(name="billing", team=payments)
    key = ApplicationKey(application=billing)
    plain_key = key.generate()
    key.save()
    AccessRule.objects.create(team=payments, principal_kind=AccessRule.APPLICATION, principal_application=billing,
                              topic_pattern="orders.*", publish=True)
    assert push.push().outcome == "published"
    token_file = tmp_path / "token"
    token_file.write_text(make_token(sam))
    prometheus = start_prometheus(None)
    stop, sent = threading.Event(), []
    with uvicorn_portal(shared_database, redis_url, mesh_prefix, PROMETHEUS_URL=prometheus.url,
                        PROMETHEUS_SCRAPE_INTERVAL="1") as portal, ingesting(redis_client):
        prometheus.start(render(portal, token_file, scrape_interval=1))
        runtime = RuntimeProcess(["--application", "billing", "--listen", "127.0.0.1:0", "--store-url", redis_url,
                                  "--config-redis-url", redis_url, "--prefix", mesh_prefix, "--heartbeat-interval",
                                  "0.5", "--log-level", "WARNING"])
        publisher = threading.Thread(target=_publisher, args=(runtime.url, plain_key, stop, sent), daemon=True)
        try:
            wait_for(lambda: urllib.request.urlopen(f"{runtime.url}/readyz", timeout=2).status == 200, 30,  # noqa: S310
                     "the runtime to apply the pushed configuration", interval=0.1)
            publisher.start()
            wait_for(lambda: targets(prometheus).get(runtime_id(runtime), {}).get("health") == "up", 30,
                     "Prometheus to scrape the runtime it found through the portal")
            if not os.path.exists(CHROMIUM):
                pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium (.ci/run does)")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_context(base_url=portal).new_page()
                page.set_default_timeout(15_000)
                errors = []
                page.on("pageerror", lambda error: errors.append(error))
                page.goto("/login/")
                page.fill("#id_username", bob.username)
                page.fill("#id_password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(lambda url: "/login/" not in url)
                page.goto(f"/topics/{topic.pk}/")
                page.click("[data-testid=tab-traffic]")
                card = page.locator("[data-testid='chart-topic.published']")
                # the rate needs two scrapes of a growing counter; the chart moves by itself until then
                page.wait_for_function(
                    """() => {
                        const card = document.querySelector("[data-testid='chart-topic.published']");
                        const latest = JSON.parse(card.dataset.latest || "{}");
                        return card.dataset.state === "ok" && (latest.billing || 0) > 0;
                    }""", timeout=45_000)
                assert "Updated" in card.locator("[data-testid=chart-note]").inner_text()
                page.screenshot(path=str(tmp_path / "traffic.png"))
                assert page.locator("[data-testid=charts-status]").inner_text().startswith("Live")
                page.click("[data-testid=range-picker] [data-range='1h']")
                page.wait_for_function(
                    """() => document.querySelector("[data-testid='chart-topic.published']").dataset.state === "ok"
                             && document.querySelector("[data-range='1h']").classList.contains("active")""")
                assert errors == []
                browser.close()
        finally:
            stop.set()
            if publisher.is_alive():
                publisher.join(10)
            runtime.kill()
    assert sent  # the events whose rate the chart showed


def runtime_id(runtime: RuntimeProcess) -> str:
    """The id the runtime gave itself (in its /v1/info)."""
    with urllib.request.urlopen(f"{runtime.url}/v1/info", timeout=5) as response:  # noqa: S310
        return orjson.loads(response.read())["runtime"]
