"""The whole chain in a real Chromium: a runtime publishes, Prometheus (found through the portal's
service discovery) scrapes it, the portal's poller asks Prometheus, the Traffic tab draws it."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import chromium, log_in
from tests.portal_support.factories import make_app_with_key
from tests.portal_support.live_stack import publish as publish_event
from tests.portal_support.scraping import scraped_runtime
from topics.models import Topic

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _order(n: int) -> dict:
    return {"specversion": "1.0", "id": f"evt-{n}", "source": "/test", "type": "com.example.order",
            "datacontenttype": "application/json", "data": {"order_id": str(n)}}


def test_the_traffic_tab_shows_the_rate_of_events_just_published(
        shared_database, mesh_prefix, redis_url, redis_client, start_prometheus, tmp_path, store, payments, bob, sam):
    topic = Topic.objects.create(name="orders.created", team=payments, store=store)
    plain_key = make_app_with_key(payments, "billing", may_publish=["orders.*"]).plain_key
    sent = []

    def publish(url: str, n: int) -> None:
        assert publish_event(url, "orders.created", _order(n), plain_key) == 202
        sent.append(n)

    with scraped_runtime(database=shared_database, redis_url=redis_url, redis_client=redis_client, prefix=mesh_prefix,
                         prometheus=start_prometheus(None), reader=sam, application="billing",
                         publish=publish) as portal, chromium() as browser:
        page = browser.new_context(base_url=portal).new_page()
        page.set_default_timeout(15_000)
        errors = []
        page.on("pageerror", lambda error: errors.append(error))
        log_in(page, bob.username)
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
    assert sent  # the events whose rate the chart showed

