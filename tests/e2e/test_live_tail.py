"""The Live tab in a real Chromium: the portal under uvicorn, a runtime process, the real Redis.
Events published through the runtime appear; a filter narrows them; pause counts what arrives
and resume goes on; a row opens the event; a refusal shows on the topic's Refused panel.

Waits on the page go through Playwright's locators and attribute reads, never a JavaScript
string to evaluate: the portal's Content-Security-Policy forbids eval, in tests as in production."""

from __future__ import annotations

import base64
import itertools
import json
import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import log_in
from tests.portal_support.factories import make_app_with_key
from tests.portal_support.live_portal import shared_database  # noqa: F401 - a fixture
from tests.portal_support.live_stack import publish, runtime_process, uvicorn_portal  # noqa: F401 - fixtures
from tests.portal_support.waiting import wait_for
from topics.models import Topic

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(payments, store, bob, settings, key_prefix, redis_client):
    settings.MESH_KEY_PREFIX = key_prefix
    topics = {name: Topic.objects.create(name=name, team=payments, store=store)
              for name in ("orders.created", "orders.failed")}
    checkout = make_app_with_key(payments, "checkout", may_publish=["orders.*"], may_not_publish=["orders.failed"],
                                 description="e2e")
    return {"topics": topics, "key": checkout.plain_key}


def order(event_id: str, **extra) -> dict:
    return {"specversion": "1.0", "id": event_id, "source": "/checkout", "type": "com.example.order.created",
            "subject": event_id.replace("evt", "o"), "datacontenttype": "application/json", "customer": "c-42",
            "data": {"order_id": event_id.replace("evt", "o"), "amount": 12.5}, **extra}


def live_page(browser, portal: str):
    """A page on ``portal`` that may use the clipboard (the copy buttons), and the script errors it
    reports, which a test expects to stay none."""
    context = browser.new_context(base_url=portal, viewport={"width": 1500, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=portal)
    context.set_default_timeout(15_000)
    page = context.new_page()
    script_errors: list = []
    page.on("pageerror", lambda error: script_errors.append(error))
    return page, script_errors


def watch_live(page, runtime: str, topic: Topic, key: str) -> None:
    """Sign in as bob and open ``topic``'s Live tab, then publish probes until one shows: the runtime
    taps once it has read the watch key (once a second)."""
    log_in(page, "bob")
    page.goto(topic.get_absolute_url())
    page.click("[data-testid=tab-live]")
    page.wait_for_selector("[data-testid=tail-status]:text('live')")
    probes = itertools.count(1)

    def tapped() -> bool:
        publish(runtime, topic.name, order(f"probe-{next(probes)}"), key)
        return page.locator("[data-testid=tail-row]").count() > 0

    wait_for(tapped, 15, "the first event in the browser", interval=0.3)


def test_watching_a_topic_live(browser, stack, uvicorn_portal, runtime_process, redis_client):  # noqa: F811
    runtime = runtime_process()
    topic = stack["topics"]["orders.created"]
    page, script_errors = live_page(browser, uvicorn_portal)
    watch_live(page, runtime, topic, stack["key"])
    assert page.is_hidden("[data-testid=tail-masked]")  # bob is of the topic's team
    assert publish(runtime, "orders.created", order("evt-1"), stack["key"]) == 202
    page.wait_for_selector("tr[data-event-id='evt-1']")
    assert page.locator("[data-testid=tail-row]").first.get_attribute("data-event-id") == "evt-1"  # newest on top

    # A filter applies on the server: only what matches arrives.
    page.fill("[data-testid=tail-text]", "evt-3")
    tail = page.locator("[data-testid=tail]")
    expect(tail).to_have_attribute("data-filter-applied", re.compile("evt-3"))
    publish(runtime, "orders.created", [order("evt-2"), order("evt-3")], stack["key"])
    page.wait_for_selector("tr[data-event-id='evt-3']")
    wait_for(lambda: int(page.get_attribute("[data-testid=tail-stats]", "data-received") or 0) >= 2, 15,
             "the stats to count both events")
    assert page.locator("tr[data-event-id='evt-2']").count() == 0
    page.fill("[data-testid=tail-filters]", '[{"exact": {"Type": "x"}}]')
    page.click("[data-testid=tail-apply]")
    page.wait_for_selector("[data-testid=tail-filter-error]:has-text('filters[0].exact')")
    page.click("[data-testid=tail-clear-filter]")
    expect(tail).to_have_attribute("data-filter-applied", '{"filters":[],"text":""}')

    # Pause keeps the rows and counts what arrives; resume goes on live.
    rows = page.locator("[data-testid=tail-row]").count()
    page.click("[data-testid=tail-pause]")
    expect(tail).to_have_attribute("data-paused", "true")
    publish(runtime, "orders.created", [order(f"evt-p{i}") for i in range(3)], stack["key"])
    page.wait_for_selector("[data-testid=tail-paused-count]:text('Paused — 3 arrived')")
    assert page.locator("[data-testid=tail-row]").count() == rows
    page.click("[data-testid=tail-pause]")
    page.wait_for_selector("[data-testid=tail-paused-count]:text('3 arrived while paused')")
    publish(runtime, "orders.created", order("evt-4"), stack["key"])
    page.wait_for_selector("tr[data-event-id='evt-4']")
    assert page.locator("tr[data-event-id='evt-p0']").count() == 0

    # A row opens the event: attributes, extensions, the data in several views, copy buttons.
    page.click("tr[data-event-id='evt-1'] td:nth-child(3)")
    detail = page.locator("[data-testid=event-detail]")
    detail.wait_for(state="visible")
    assert "customer" in detail.locator("[data-testid=event-extensions]").inner_text()
    assert '"order_id": "o-1"' in detail.locator("[data-testid=event-data]").inner_text()
    page.click("[data-testid=view-hex]")
    assert detail.locator("[data-testid=event-data]").inner_text().startswith("00000000  7b 22 6f 72")
    assert detail.locator("[data-testid=event-journey]").get_attribute("href") == "/events/evt-1/"
    page.click("[data-testid=copy-id]")
    wait_for(lambda: page.evaluate("navigator.clipboard.readText()") == "evt-1", 15, "the id in the clipboard")
    page.click("[data-testid=copy-curl]")
    curl = page.evaluate("navigator.clipboard.readText()")
    assert "/v1/topics/orders.created/events" in curl and "-H 'ce-customer: c-42'" in curl
    assert "--data-binary '{\"order_id\": \"o-1\", \"amount\": 12.5}'" in curl  # as published
    page.keyboard.press("Escape")

    # A refusal shows on the Refused panel of its topic's Live tab.
    failed = stack["topics"]["orders.failed"]
    page.goto(f"/topics/{failed.pk}/live/")
    page.wait_for_selector("[data-testid=refusals-panel] [data-role=status]:text('live')")
    refused = itertools.count(1)

    def refusal_shown() -> bool:
        publish(runtime, "orders.failed", order(f"evt-r{next(refused)}"), stack["key"])
        return page.locator("[data-testid=refusal]").count() > 0

    wait_for(refusal_shown, 15, "a refusal in the panel", interval=0.3)
    assert page.locator("[data-testid=refusal]").first.get_attribute("data-summary") == \
        "checkout refused on orders.failed by rule deny checkout publish orders.failed"
    assert script_errors == []
    page.context.close()


#: Numbers a double cannot hold, a trailing zero and a producer's spacing: JSON.parse and JSON.stringify
#: change them all.
EXACT_DATA = '{"n": 12345678901234567890123, "ratio": 0.1000000000000000055511151231257827, "price": 1.50}'


def test_an_event_is_shown_and_copied_as_it_was_published(browser, stack, uvicorn_portal, runtime_process):  # noqa: F811
    runtime = runtime_process()
    page, script_errors = live_page(browser, uvicorn_portal)
    watch_live(page, runtime, stack["topics"]["orders.created"], stack["key"])
    event = ('{"specversion":"1.0","id":"evt-exact","source":"/checkout","type":"com.example.order.created",'
             '"datacontenttype":"application/json","data":' + EXACT_DATA + "}")
    assert publish(runtime, "orders.created", event.encode(), stack["key"]) == 202
    page.click("tr[data-event-id='evt-exact'] td:nth-child(3)")
    detail = page.locator("[data-testid=event-detail]")
    detail.wait_for(state="visible")
    data = detail.locator("[data-testid=event-data]")
    pretty = ('{\n  "n": 12345678901234567890123,\n  "ratio": 0.1000000000000000055511151231257827,\n'
              '  "price": 1.50\n}')
    assert data.inner_text() == pretty
    page.click("[data-testid=view-text]")
    assert data.inner_text() == EXACT_DATA
    page.click("[data-testid=view-base64]")
    assert data.inner_text() == base64.b64encode(EXACT_DATA.encode()).decode()

    page.click("[data-testid=copy-json]")
    detail.locator("[data-role=copied]:text('Copied JSON.')").wait_for()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert pretty.replace("\n", "\n  ") in copied  # the data, indented one level deeper
    as_published = json.loads(copied, parse_float=Decimal)
    as_published.pop("traceparent")  # the runtime's trace context
    assert as_published == json.loads(event, parse_float=Decimal)
    page.click("[data-testid=copy-curl]")
    detail.locator("[data-role=copied]:text('Copied curl.')").wait_for()
    assert f"--data-binary '{EXACT_DATA}'" in page.evaluate("navigator.clipboard.readText()")
    assert script_errors == []
    page.context.close()
