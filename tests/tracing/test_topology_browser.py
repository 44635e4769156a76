"""The live topology in a real Chromium, on the whole chain: a runtime publishes (and is refused
on a denied topic), Prometheus (found through the portal's service discovery) scrapes it, the
topology API asks Prometheus, the page draws the graph with the rates and the refused edge red;
a click on a node opens its page, a click on a domain collapses and expands it."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request

import orjson
import pytest

from governance.models import AccessRule, Application, ApplicationKey
from rollout import push
from subscriptions.models import Subscription
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.portal_support.live_portal import uvicorn_portal, wait_for
from tests.portal_support.personas import PASSWORD
from tests.portal_support.runtimes import RuntimeProcess
from topics.models import Topic
from tracing.prometheus_config import render

from .test_discovery import ingesting, make_token, targets
from .test_traffic_browser import runtime_id

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RED = "rgb(220,53,69)"


def _publish(url: str, key: str, topic: str, n: int) -> int:
    body = orjson.dumps({"specversion": "1.0", "id": f"evt-{topic}-{n}", "source": "/test", "type": "com.example.order",
                         "datacontenttype": "application/json", "data": {"order_id": str(n)}})
    request = urllib.request.Request(f"{url}/v1/topics/{topic}/events", data=body, method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/cloudevents+json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _publisher(url: str, key: str, stop: threading.Event, statuses: list[int]) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        statuses.append(_publish(url, key, "orders.created", n))
        statuses.append(_publish(url, key, "orders.failed", n))  # denied: a refusal
        stop.wait(0.05)


def test_the_topology_draws_the_mesh_with_live_rates_and_the_refused_edge_red(
        shared_database, settings, mesh_prefix, redis_url, redis_client, start_prometheus, tmp_path, store,
        payments, logistics, bob, sam):
    from playwright.sync_api import sync_playwright

    created = Topic.objects.create(name="orders.created", team=payments, store=store)
    failed = Topic.objects.create(name="orders.failed", team=payments, store=store)
    billing = Application.objects.create(name="billing", team=payments)
    shipper = Application.objects.create(name="shipper", team=logistics)
    key = ApplicationKey(application=billing)
    plain_key = key.generate()
    key.save()
    AccessRule.objects.create(team=payments, principal_kind=AccessRule.APPLICATION, principal_application=billing,
                              topic_pattern="orders.*", publish=True)
    AccessRule.objects.create(team=payments, principal_kind=AccessRule.APPLICATION, principal_application=billing,
                              topic_pattern="orders.failed", publish=True, effect=AccessRule.DENY)
    subscription = Subscription.objects.create(application=shipper, topic=created, state=Subscription.PAUSED,
                                               webhook_url="https://hooks.shipper.example/in")
    assert push.push().outcome == "published"
    token_file = tmp_path / "token"
    token_file.write_text(make_token(sam))
    prometheus = start_prometheus(None)
    stop, statuses = threading.Event(), []
    with uvicorn_portal(shared_database, redis_url, mesh_prefix, PROMETHEUS_URL=prometheus.url,
                        PROMETHEUS_SCRAPE_INTERVAL="1") as portal, ingesting(redis_client):
        prometheus.start(render(portal, token_file, scrape_interval=1))
        runtime = RuntimeProcess(["--application", "billing", "--listen", "127.0.0.1:0", "--store-url", redis_url,
                                  "--config-redis-url", redis_url, "--prefix", mesh_prefix, "--heartbeat-interval",
                                  "0.5", "--log-level", "WARNING"])
        publisher = threading.Thread(target=_publisher, args=(runtime.url, plain_key, stop, statuses), daemon=True)
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
                page = browser.new_context(base_url=portal, viewport={"width": 1400, "height": 1000}).new_page()
                page.set_default_timeout(15_000)
                errors, console = [], []
                page.on("pageerror", lambda error: errors.append(error))
                page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
                page.goto("/login/")
                page.fill("#id_username", bob.username)
                page.fill("#id_password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(lambda url: "/login/" not in url)
                page.click("[data-testid=nav-topology]")
                page.wait_for_url("**/topology/")

                good = f"publish:{billing.pk}:{created.pk}"
                refused = f"publish:{billing.pk}:{failed.pk}"
                # the rates need two scrapes of growing counters; the page polls until then
                page.wait_for_function(
                    """([good, refused]) => {
                        const row = (id) => document.querySelector(`[data-edge-id="${id}"]`);
                        return row(good) && Number(row(good).dataset.rate) > 0 && row(good).dataset.health === "ok"
                            && row(refused) && row(refused).dataset.health === "failing";
                    }""", arg=[good, refused], timeout=60_000)
                assert page.locator("[data-testid=topology-status]").inner_text().startswith("Live")
                assert page.locator("[data-testid=topology-rates-missing]").is_hidden()
                drawn = page.evaluate("""([good, refused, sub]) => {
                    const cy = window.meshTopology.cy;
                    return {nodes: cy.nodes().map((n) => n.id()),
                            refused: cy.getElementById(refused).style("line-color"),
                            good: cy.getElementById(good).style("line-color"),
                            label: cy.getElementById(good).data("label"), sub: cy.getElementById(sub).length};
                }""", [good, refused, f"subscription:{subscription.pk}"])
                assert {f"application:{billing.pk}", f"topic:{created.pk}", f"topic:{failed.pk}", "domain:orders",
                        f"subscription:{subscription.pk}", "host:hooks.shipper.example"} <= set(drawn["nodes"])
                assert drawn["refused"] == RED and drawn["good"] != RED
                assert drawn["label"].endswith("/s") and drawn["sub"] == 1
                rows = page.locator(f"[data-edge-id='{refused}'] td")
                assert rows.nth(0).inner_text() == "billing" and rows.nth(1).inner_text() == "orders.failed"
                assert "forbidden" in rows.nth(4).inner_text()
                page.screenshot(path=str(tmp_path / "topology.png"))

                # a domain collapses into one node and expands again on a click
                drawn_topic = f"() => window.meshTopology.cy.getElementById('topic:{created.pk}').length"
                page.click("[data-topology-collapse]")
                page.wait_for_function("() => window.meshTopology.cy.$id('domain:orders').hasClass('collapsed')")
                assert page.evaluate(drawn_topic) == 0
                _click_node(page, "domain:orders")
                page.wait_for_function(f"{drawn_topic} === 1")

                # a click on a topic opens its page
                _click_node(page, f"topic:{created.pk}")
                page.wait_for_url(f"**/topics/{created.pk}/")
                assert errors == [] and console == [], (errors, console)  # no script error, no CSP violation
                browser.close()
        finally:
            stop.set()
            if publisher.is_alive():
                publisher.join(10)
            runtime.kill()
    assert 202 in statuses and 403 in statuses


def _click_node(page, node_id: str) -> None:
    """A real click where Cytoscape.js drew the node (its centre, in page coordinates)."""
    x, y = page.evaluate("""(id) => {
        const node = window.meshTopology.cy.getElementById(id);
        const box = window.meshTopology.cy.container().getBoundingClientRect();
        const at = node.renderedPosition();
        return [box.left + at.x, box.top + at.y];
    }""", node_id)
    page.mouse.click(x, y)
