"""The subscription review in a real browser: bob requests through the topic page's form, alice
approves from her inbox with a comment (htmx, in place), both see the new state and the history."""

from __future__ import annotations

import pytest
from django.core import mail

from governance.models import Application
from subscriptions.models import Subscription
from topics.models import Topic

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_bob_requests_alice_approves_in_her_inbox_and_both_see_state_and_history(
        logged_in, alice, bob, payments, store, eager_celery):
    topic = Topic.objects.create(name="orders.created", team=payments, store=store)
    Application.objects.create(name="billing", team=payments)

    bob_page = logged_in("bob")
    bob_page.goto(topic.get_absolute_url())
    bob_page.click("[data-testid=subscribe] summary")
    bob_page.select_option("[data-testid=subscribe] select[name=application]", label="billing")
    bob_page.fill("[data-testid=subscribe] input[name=webhook_url]", "https://billing.internal/hooks/orders")
    bob_page.select_option("[data-testid=subscribe] select[name=delivery_mode]", "structured")
    bob_page.click("button:has-text('Request subscription')")
    bob_page.wait_for_selector("text=Requested billing ← orders.created")
    assert bob_page.inner_text("h1 [data-testid=state]") == "requested"
    subscription = Subscription.objects.get()
    assert subscription.delivery_mode == "structured" and subscription.requested_by == bob
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]

    alice_page = logged_in("alice")
    assert alice_page.inner_text("nav [data-testid=inbox-count]") == "1"
    alice_page.click("nav a:has-text('Inbox')")
    row = alice_page.locator("[data-testid=inbox-row]", has_text="orders.created")
    row.locator("textarea[name=comment]").fill("Welcome, billing.")
    row.locator("[data-testid=inbox-approve]").click()
    alice_page.wait_for_selector("[data-testid=inbox-done]:has-text('Approved.')")
    alice_page.wait_for_selector("nav [data-testid=inbox-count]:text-is('0')")  # the badge follows, no reload
    assert mail.outbox[-1].to == ["bob@example.com"] and "Welcome, billing." in mail.outbox[-1].body

    for page, reader in ((alice_page, "alice"), (bob_page, "bob")):
        page.goto(subscription.get_absolute_url())
        assert page.inner_text("h1 [data-testid=state]") == "active", reader
        assert page.inner_text("[data-testid=reviewer-comment]") == "Welcome, billing.", reader
        page.click("a.nav-link:has-text('History')")
        entries = page.locator("[data-testid=audit-entry]")
        entries.first.wait_for()
        assert entries.count() == 2, reader
        approval, request = entries.nth(0).inner_text(), entries.nth(1).inner_text()
        assert "alice" in approval and "Updated" in approval and "requested" in approval and "active" in approval
        assert "bob" in request and "Created" in request
