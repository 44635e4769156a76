"""What a newcomer noticed: error pages in the portal's layout, no bulk delete for those who may
delete nothing, readable counters, durations and timestamps in one format, "none" for no
filters, a favicon, the right article in the demo data."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import RequestFactory
from django.views.defaults import server_error

from meshadmin.formatting import count, counter_label, duration, timestamp
from rollout.models import Runtime
from subscriptions.models import Subscription
from topics.models import Topic

pytestmark = pytest.mark.django_db


def test_a_403_is_a_page_of_the_portal_with_its_reason(as_user, store):
    response = as_user("bob").get("/eventstores/add/")  # only staff create stores
    body = response.content.decode()
    assert response.status_code == 403
    assert "navbar" in body and 'data-testid="error-page"' in body
    assert "You may not create event stores." in body and "meshadmin.css" in body


def test_a_404_is_a_page_of_the_portal(as_user):
    response = as_user("bob").get("/topics/999999/")
    body = response.content.decode()
    assert response.status_code == 404 and "navbar" in body and "/topics/999999/" in body


def test_a_500_is_a_page_of_the_portal_even_without_a_request_context():
    response = server_error(RequestFactory().get("/"))
    body = response.content.decode()
    assert response.status_code == 500
    assert "meshadmin.css" in body and "Something went wrong on our side" in body


def test_a_viewer_is_offered_no_bulk_delete_and_a_member_only_for_their_teams_rows(as_user, payments, logistics,
                                                                                       store):
    ours = Topic.objects.create(name="payments.made", team=payments, store=store)
    theirs = Topic.objects.create(name="parcels.sent", team=logistics, store=store)
    viewer = as_user("dave").get("/topics/").content.decode()
    assert "Delete selected" not in viewer and 'name="pk"' not in viewer and "data-select-all" not in viewer
    member = as_user("bob").get("/topics/").content.decode()
    assert "Delete selected" in member
    assert f'name="pk" value="{ours.pk}"' in member and f'name="pk" value="{theirs.pk}"' not in member


def test_counters_have_labels_and_whole_numbers(as_user, personas):
    runtime = Runtime.objects.create(runtime_id="billing-1", application="billing",
                                     counters={"events_published": 1234567.0, "delivery_attempts": 17,
                                               "append_seconds": 0.25})
    body = as_user("bob").get(f"/runtimes/{runtime.pk}/").content.decode()
    assert "Events published" in body and "1,234,567" in body and "1234567.0" not in body
    assert "Delivery attempts" in body and ">17<" in body and "events_published<" not in body
    assert counter_label("events_published") == "Events published"
    assert (count(3.0), count(12), count(0.25), count(1234.5)) == ("3", "12", "0.25", "1,234.5")


def test_retention_is_shown_in_words(as_user, payments, store):
    topic = Topic.objects.create(name="payments.kept", team=payments, store=store, retention_max_age=604800,
                                 retention_max_length=100000)
    body = as_user("bob").get(f"/topics/{topic.pk}/").content.decode()
    assert "7 days" in body and "604800" not in body and "100,000 events" in body
    assert (duration(86400), duration(5400), duration(90061), duration(45)) == \
        ("1 day", "1 hour 30 minutes", "1 day 1 hour 1 minute 1 second", "45 seconds")


def test_timestamps_have_one_format_with_the_iso_value_in_a_time_element(as_user, payments, store):
    moment = datetime(2026, 5, 1, 14, 34, 56, tzinfo=timezone(timedelta(hours=2)))
    assert timestamp(moment) == ('<time datetime="2026-05-01T12:34:56+00:00" title="2026-05-01T12:34:56+00:00">'
                                 "2026-05-01 12:34:56 UTC</time>")
    Topic.objects.create(name="payments.timed", team=payments, store=store)
    Topic.objects.filter(name="payments.timed").update(updated=moment.astimezone(UTC))
    listing = as_user("bob").get("/topics/").content.decode()
    assert "2026-05-01 12:34:56 UTC" in listing
    topic = Topic.objects.get(name="payments.timed")
    detail = as_user("bob").get(f"/topics/{topic.pk}/").content.decode()
    shown = re.findall(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d)?(?: UTC)?", detail)
    assert shown and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", s) or "T" in s for s in shown)


def test_no_filters_show_as_none_not_null(as_user, payments, store):
    Topic.objects.create(name="payments.watched", team=payments, store=store)
    body = as_user("bob").get("/subscriptions/add/").content.decode()
    textarea = re.search(r'<textarea[^>]*name="filters"[^>]*>(.*?)</textarea>', body, re.S)
    assert textarea and textarea.group(1).strip() == "" and 'placeholder="none: every event"' in textarea.group(0)
    assert "null" not in textarea.group(0)
    assert Subscription._meta.get_field("filters").default() == []


def test_the_pages_have_a_favicon(as_user):
    body = as_user("bob").get("/").content.decode()
    link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', body)
    assert link and finders.find(link.group(1).removeprefix("/static/"))


def test_the_demo_data_speaks_proper_english(tmp_path, settings):
    settings.DATA_DIR = tmp_path
    call_command("seed_demo", keys_file=str(tmp_path / "keys.json"), stdout=io.StringIO())
    descriptions = list(Topic.objects.values_list("description", flat=True))
    assert any(d.startswith("An order was") for d in descriptions)
    assert not [d for d in descriptions if re.match(r"A [aeiou]", d)]
