"""The catalog in a real browser: log in, create a topic through the form, find it, see its history."""

from __future__ import annotations

import pytest

from topics.models import Topic

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_bob_creates_a_topic_finds_it_by_search_and_opens_its_history(logged_in, bob, store, payments):
    page = logged_in("bob")
    page.click("text=Topics")
    page.click("text=Add topic")
    page.fill("#id_name", "orders.eu.created")
    page.fill("#id_description", "Orders placed **in the EU**.")
    page.select_option("#id_team", str(payments.pk))
    page.select_option("#id_store", str(store.pk))
    page.fill("#id_tags", "eu, orders")
    page.click("button:has-text('Create')")
    page.wait_for_selector("text=Created topic orders.eu.created")
    assert page.inner_html("[data-testid=topic-description]").count("<strong>in the EU</strong>") == 1

    page.goto("/topics/")
    page.fill("input[name=q]#id_q", "orders.eu")
    page.wait_for_selector("[data-testid=result-count]:has-text('1 result')")
    page.click("a:has-text('orders.eu.created')")
    page.click("a.nav-link:has-text('History')")
    entry = page.wait_for_selector("[data-testid=audit-entry]")
    assert "Created" in entry.inner_text() and "bob" in entry.inner_text()
    assert Topic.objects.get(name="orders.eu.created").tags.count() == 2


def test_a_form_error_is_shown_next_to_the_field(logged_in, bob, store, payments):
    page = logged_in("bob")
    page.goto("/topics/add/")
    page.fill("#id_name", "Not A Valid Name")
    page.select_option("#id_team", str(payments.pk))
    page.select_option("#id_store", str(store.pk))
    page.click("button:has-text('Create')")
    error = page.wait_for_selector("[data-testid=error-name]")
    assert "must be dot-separated segments of letters, digits" in error.inner_text()
    assert not Topic.objects.exists()
