"""Changing what an approved subscription delivers, or where, needs the topic's team again (issue 12,
item 2).

The subscription is Logistics' application ``tracker`` on Payments' topic ``orders.created``,
active: carol (member of Logistics) is the application side; alice (owner) and bob (member) of
Payments are the topic side; dave is a viewer of Payments; erin is in neither team; sam is staff.
A change of webhook URL, filters, delivery mode or responder flag by the application side waits
for the topic side, while the approved settings keep delivering; approving switches the next
configuration.
"""

from __future__ import annotations

import json

import pytest
from django.core import mail
from django.urls import reverse

from meshadmin.models import AuditEntry, Membership
from rollout import push
from rollout.compiler import compile_mesh_config
from rollout.models import ConfigVersion
from subscriptions.models import Subscription, SubscriptionChange
from tests.portal_support.factories import make_app, make_subscription, make_topic
from tests.portal_support.mesh import mesh_redis  # noqa: F401 - a fixture: this test's key prefix and queue
from tests.portal_support.personas import client_for, make_member
from topics.models import EventStore

pytestmark = pytest.mark.django_db

OLD_URL, NEW_URL = "https://tracker.example.com/hooks", "https://elsewhere.example.net/hooks"
TOPIC_SIDE = ("alice", "bob", "sam")
EVERYONE = ("alice", "bob", "carol", "dave", "erin", "sam")
#: A change of each reviewed field: (form value, API value, stored value).
FILTERS = [{"exact": {"type": "com.example.order.created"}}]
CHANGES = {
    "webhook_url": (NEW_URL, NEW_URL, NEW_URL),
    "filters": (json.dumps(FILTERS), FILTERS, FILTERS),
    "delivery_mode": ("structured", "structured", "structured"),
    # its webhook's answers become the replies to the topic's requests (EventMesh 101)
    "responder": ("on", True, True),
}


@pytest.fixture
def sub(payments, logistics, store, people):
    topic = make_topic(payments, store, "orders.created")
    app = make_app(logistics, "tracker")
    subscription = make_subscription(app, topic, Subscription.ACTIVE)
    Subscription.objects.filter(pk=subscription.pk).update(webhook_url=OLD_URL)
    subscription.refresh_from_db()
    return subscription


def form_data(sub: Subscription, **changes) -> dict:
    data = {"webhook_url": sub.webhook_url, "delivery_mode": sub.delivery_mode, "timeout_ms": sub.timeout_ms,
            "max_attempts": sub.max_attempts, "backoff_base_ms": sub.backoff_base_ms,
            "backoff_cap_ms": sub.backoff_cap_ms, "max_in_flight": sub.max_in_flight,
            "filters": json.dumps(sub.filters)}
    return {**data, **changes}


def edit(channel: str, user, sub: Subscription, field: str | None = None, **extra):
    client = client_for(user)
    if channel == "page":
        changes = {field: CHANGES[field][0]} if field else {}
        return client.post(reverse("subscriptions:subscription_edit", args=[sub.pk]),
                           form_data(sub, **changes, **extra))
    body = {field: CHANGES[field][1]} if field else {}
    return client.patch(reverse("api:subscription-detail", args=[sub.pk]), {**body, **extra},
                        content_type="application/json")


def step(channel: str, user, change: SubscriptionChange, name: str, comment: str = "fine"):
    client = client_for(user)
    if channel == "page":
        return client.post(reverse("subscriptions:subscriptionchange_transition", args=[change.pk, name]),
                           {"comment": comment})
    return client.post(reverse(f"api:subscriptionchange-{name}", args=[change.pk]), {"comment": comment},
                       content_type="application/json")


def compiled(sub: Subscription) -> dict:
    return next(s for s in compile_mesh_config()["subscriptions"] if s["id"] == sub.subscription_id)


def asked(sub, people, field="webhook_url") -> SubscriptionChange:
    assert edit("api", people["carol"], sub, field).status_code == 202
    return SubscriptionChange.objects.get(subscription=sub, state=SubscriptionChange.REQUESTED)


# Asking


@pytest.mark.parametrize("channel", ["page", "api"])
@pytest.mark.parametrize("field", CHANGES)
def test_a_change_by_the_application_side_waits_and_the_approved_version_keeps_delivering(sub, people, channel,
                                                                                          field):
    before = compiled(sub)
    response = edit(channel, people["carol"], sub, field)
    assert response.status_code == (302 if channel == "page" else 202)
    sub.refresh_from_db()
    assert sub.state == Subscription.ACTIVE and getattr(sub, field) != CHANGES[field][2]
    assert compiled(sub) == before  # the document still carries the approved settings
    change = SubscriptionChange.objects.get(subscription=sub)
    assert change.state == SubscriptionChange.REQUESTED and change.requested_by == people["carol"]
    assert change.after[field] == CHANGES[field][2] and change.before[field] == getattr(sub, field)
    if channel == "api":
        body = response.json()
        assert body[field] == getattr(sub, field)  # the approved value, still delivering
        assert body["pending_change"]["after"][field] == CHANGES[field][2]


def test_settings_that_change_nothing_delivered_apply_at_once(sub, people):
    response = edit("api", people["carol"], sub, timeout_ms=9000, max_attempts=3)
    assert response.status_code == 200 and response.json()["pending_change"] is None
    sub.refresh_from_db()
    assert (sub.timeout_ms, sub.max_attempts) == (9000, 3)
    assert compiled(sub)["delivery"]["timeout_ms"] == 9000
    assert not SubscriptionChange.objects.exists()


def test_a_mixed_edit_applies_the_harmless_part_and_asks_for_the_rest(sub, people):
    response = edit("page", people["carol"], sub, "webhook_url", timeout_ms=7000)
    assert response.status_code == 302
    sub.refresh_from_db()
    assert (sub.webhook_url, sub.timeout_ms) == (OLD_URL, 7000)
    assert SubscriptionChange.objects.get().after["webhook_url"] == NEW_URL


@pytest.mark.parametrize("state", [Subscription.REQUESTED, Subscription.REJECTED, Subscription.REVOKED])
def test_a_subscription_that_delivers_nothing_changes_at_once(sub, people, state):
    Subscription.objects.filter(pk=sub.pk).update(state=state)
    assert edit("api", people["carol"], sub, "webhook_url").status_code == 200
    sub.refresh_from_db()
    assert sub.webhook_url == NEW_URL and not SubscriptionChange.objects.exists()


@pytest.mark.parametrize("who", ["sam", "both"])
def test_an_editor_on_the_topic_side_changes_at_once(sub, people, payments, logistics, who):
    user = people["sam"] if who == "sam" else make_member("pat", logistics, Membership.MEMBER)
    if who == "both":
        Membership.objects.create(team=payments, user=user, role=Membership.MEMBER)
    assert edit("api", user, sub, "webhook_url").status_code == 200
    sub.refresh_from_db()
    assert sub.webhook_url == NEW_URL and compiled(sub)["delivery"]["url"] == NEW_URL
    assert not SubscriptionChange.objects.exists()


@pytest.mark.parametrize("who", ["alice", "bob", "dave", "erin"])
def test_who_is_not_on_the_application_side_cannot_edit(sub, people, who):
    # the topic's team sees the subscription: the API tells it why (403); erin sees nothing (404)
    assert edit("api", people[who], sub, "webhook_url").status_code == (404 if who == "erin" else 403)
    assert edit("page", people[who], sub, "webhook_url").status_code == 404
    assert not SubscriptionChange.objects.exists()


def test_a_second_edit_replaces_the_pending_proposal(sub, people):
    first = asked(sub, people)
    response = edit("api", people["carol"], sub, webhook_url="https://third.example.org/h")
    assert response.status_code == 202
    [change] = SubscriptionChange.objects.all()
    assert change.pk == first.pk and change.after["webhook_url"] == "https://third.example.org/h"


def test_the_request_mails_the_topic_side_with_the_change(sub, people, eager_celery,
                                                         django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        edit("page", people["carol"], sub, "webhook_url")
    [message] = mail.outbox
    assert message.to == ["alice@example.com", "bob@example.com"]
    assert message.subject == "[Meshadmin] tracker asks to change its subscription to orders.created"
    assert OLD_URL in message.body and NEW_URL in message.body


# Reviewing, as every persona


@pytest.mark.parametrize("channel", ["page", "api"])
@pytest.mark.parametrize("who", EVERYONE)
def test_only_the_topic_side_approves_and_the_change_then_delivers(sub, people, channel, who):
    change = asked(sub, people)
    response = step(channel, people[who], change, "approve")
    sub.refresh_from_db()
    change.refresh_from_db()
    if who in TOPIC_SIDE:
        assert response.status_code in (200, 302)
        assert change.state == SubscriptionChange.APPROVED and change.reviewed_by == people[who]
        assert sub.webhook_url == NEW_URL and compiled(sub)["delivery"]["url"] == NEW_URL
    else:
        assert response.status_code == (404 if who == "erin" else 403), response.content
        assert change.state == SubscriptionChange.REQUESTED
        assert sub.webhook_url == OLD_URL and compiled(sub)["delivery"]["url"] == OLD_URL


@pytest.mark.parametrize("channel", ["page", "api"])
def test_a_rejection_needs_a_comment_and_keeps_the_approved_settings(sub, people, channel, eager_celery,
                                                                    django_capture_on_commit_callbacks):
    change = asked(sub, people, "filters")
    assert step(channel, people["alice"], change, "reject", comment="").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        assert step(channel, people["alice"], change, "reject", comment="too broad").status_code in (200, 302)
    sub.refresh_from_db()
    change.refresh_from_db()
    assert change.state == SubscriptionChange.REJECTED and sub.filters == []
    [message] = mail.outbox
    assert message.to == ["carol@example.com"] and "too broad" in message.body


def test_the_application_side_withdraws_its_change(sub, people):
    change = asked(sub, people)
    assert step("api", people["alice"], change, "withdraw").status_code == 403
    assert step("api", people["carol"], change, "withdraw").status_code == 200
    change.refresh_from_db()
    assert change.state == SubscriptionChange.WITHDRAWN
    assert step("api", people["alice"], change, "approve").status_code == 409


def test_the_switch_is_one_version_to_the_next(sub, people, mesh_redis):  # noqa: F811
    change = asked(sub, people)
    v1 = push.push().version
    assert push.push().outcome == "unchanged"  # asking changed nothing delivered
    step("api", people["bob"], change, "approve")
    result = push.push()
    assert result.version == v1 + 1

    diff = ConfigVersion.objects.get(version=result.version).diff
    [entry] = diff["subscriptions"]["changed"]
    assert entry["id"] == sub.subscription_id
    assert entry["fields"]["delivery"]["before"]["url"] == OLD_URL
    assert entry["fields"]["delivery"]["after"]["url"] == NEW_URL


def test_asking_and_deciding_are_audited(sub, people):
    change = asked(sub, people)
    step("api", people["alice"], change, "approve", comment="ok")
    entries = AuditEntry.objects.filter(object_type__model="subscriptionchange", object_id=str(change.pk))
    assert [(e.actor.username, e.action) for e in entries.order_by("time", "pk")] == [("carol", "create"),
                                                                                     ("alice", "update")]
    applied = AuditEntry.objects.filter(object_type__model="subscription", object_id=str(sub.pk)).first()
    assert applied.actor == people["alice"] and applied.after["webhook_url"] == NEW_URL


# The inbox and the subscription page show the change as a diff


def test_the_inbox_shows_the_diff_to_the_topic_side_only(sub, people):
    change = asked(sub, people)
    for name in EVERYONE:
        html = client_for(people[name]).get(reverse("subscriptions:inbox")).content.decode()
        listed = f'id="inbox-change-{change.pk}"' in html
        assert listed is (name in TOPIC_SIDE), name
        if listed:
            row = html.split(f'id="inbox-change-{change.pk}"')[1].split('data-testid="inbox-routes"')[0]
            assert "<th>Webhook URL</th>" in row
            assert f'<del class="diff-before">{OLD_URL}</del>' in row
            assert f'<ins class="diff-after">{NEW_URL}</ins>' in row


def test_a_responder_change_shows_as_yes_and_no(sub, people):
    asked(sub, people, "responder")
    html = client_for(people["bob"]).get(sub.get_absolute_url()).content.decode()
    diff = html.split('data-testid="change-diff"')[1].split("</table>")[0]
    assert "<th>Responder of the topic</th>" in diff
    assert '<del class="diff-before">no</del>' in diff and '<ins class="diff-after">yes</ins>' in diff


def test_approving_in_the_inbox_replaces_the_row(sub, people):
    change = asked(sub, people)
    response = client_for(people["bob"]).post(
        reverse("subscriptions:subscriptionchange_transition", args=[change.pk, "approve"]), {"comment": "ok"},
        headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith(f'<tr id="inbox-change-{change.pk}"')
    assert 'data-testid="inbox-done">Approved.' in html and 'data-testid="inbox-count">0<' in html


def test_the_subscription_page_shows_the_pending_change_and_the_buttons_each_side_may_press(sub, people):
    asked(sub, people, "filters")
    for name in ("alice", "bob", "carol", "dave", "sam"):
        html = client_for(people[name]).get(sub.get_absolute_url()).content.decode()
        assert 'data-testid="pending-change"' in html and "com.example.order.created" in html, name
        assert ('data-testid="change-approve"' in html) is (name in TOPIC_SIDE), name
        assert ('data-testid="change-withdraw"' in html) is (name in ("carol", "sam")), name
    assert client_for(people["erin"]).get(sub.get_absolute_url()).status_code == 404


def test_the_api_lists_changes_to_both_sides_only(sub, people):
    change = asked(sub, people)
    for name in EVERYONE:
        body = client_for(people[name]).get(reverse("api:subscriptionchange-list")).json()
        assert [c["id"] for c in body["results"]] == ([] if name == "erin" else [change.pk]), name


def test_moving_deliveries_to_an_mqtt_topic_waits_for_the_topic_side_too(sub, people):
    """An MQTT target (issue 16) is a 'where' like a webhook URL: switching to one is a change to review."""
    broker = EventStore.objects.create(name="devices", kind="mqtt", connection="devices")
    before = compiled(sub)
    response = edit("api", people["carol"], sub, webhook_url="", mqtt_store=broker.pk, mqtt_topic="devices/alerts",
                    delivery_mode="structured")
    assert response.status_code == 202, response.content
    sub.refresh_from_db()
    assert (sub.webhook_url, sub.mqtt_store_id, sub.mqtt_topic) == (OLD_URL, None, "")
    assert compiled(sub) == before
    change = SubscriptionChange.objects.get(subscription=sub)
    assert (change.after["mqtt_store_id"], change.after["mqtt_topic"]) == (broker.pk, "devices/alerts")
    assert step("api", people["alice"], change, "approve").status_code == 200
    sub.refresh_from_db()
    assert compiled(sub)["delivery"]["url"] == "mqtt://devices/devices/alerts"
