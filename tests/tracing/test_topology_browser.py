"""The live topology in a real Chromium, on the whole chain: a runtime publishes (and is refused
on a denied topic), Prometheus (found through the portal's service discovery) scrapes it, the
topology API asks Prometheus, the page draws the graph with the rates and the refused edge red;
a click on a node opens its page, a click on a domain collapses and expands it."""

from __future__ import annotations

import pytest

from governance.models import Application
from subscriptions.models import Subscription
from tests.e2e.conftest import chromium, log_in
from tests.portal_support.factories import make_app_with_key
from tests.portal_support.live_stack import publish as publish_event
from tests.portal_support.scraping import scraped_runtime
from topics.models import Topic

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RED = "rgb(220,53,69)"


def _order(topic: str, n: int) -> dict:
    return {"specversion": "1.0", "id": f"evt-{topic}-{n}", "source": "/test", "type": "com.example.order",
            "datacontenttype": "application/json", "data": {"order_id": str(n)}}


def test_the_topology_draws_the_mesh_with_live_rates_and_the_refused_edge_red(
        shared_database, mesh_prefix, redis_url, redis_client, start_prometheus, tmp_path, store,
        payments, logistics, bob, sam):
    created = Topic.objects.create(name="orders.created", team=payments, store=store)
    failed = Topic.objects.create(name="orders.failed", team=payments, store=store)
    publisher = make_app_with_key(payments, "billing", may_publish=["orders.*"], may_not_publish=["orders.failed"])
    billing, plain_key = publisher.application, publisher.plain_key
    shipper = Application.objects.create(name="shipper", team=logistics)
    subscription = Subscription.objects.create(application=shipper, topic=created, state=Subscription.PAUSED,
                                               webhook_url="https://hooks.shipper.example/in")
    statuses = []

    def publish(url: str, n: int) -> None:
        statuses.append(publish_event(url, "orders.created", _order("orders.created", n), plain_key))
        statuses.append(publish_event(url, "orders.failed", _order("orders.failed", n), plain_key))  # a refusal

    with scraped_runtime(database=shared_database, redis_url=redis_url, redis_client=redis_client, prefix=mesh_prefix,
                         prometheus=start_prometheus(None), reader=sam, application="billing",
                         publish=publish) as portal, chromium() as browser:
        page = browser.new_context(base_url=portal, viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(15_000)
        errors, console = [], []
        page.on("pageerror", lambda error: errors.append(error))
        page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
        log_in(page, bob.username)
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
