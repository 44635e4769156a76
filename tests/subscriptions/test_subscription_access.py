"""Subscribe rules, as the portal promises them (issue 13, item 1).

- A subscription that a deny rule keeps from subscribing cannot be approved, nor resumed once
  paused: by page, API, the inbox or any other path, the refusal names the rule.
- A subscription approved before a deny rule came is held by the runtimes (a real one, following
  the pushed configuration, in the second part): its Delivery tab says so and names the rule, its
  events wait (the lag grows), and it is delivered from where it stopped once the rule goes.

As in the workflow tests, the subscription is Logistics' application ``tracker`` on Payments'
topic ``orders.created``; alice owns Payments (the topic side), carol is in Logistics, sam is staff.
"""

from __future__ import annotations

import orjson
import pytest
from django.urls import reverse

from governance.models import AccessRule
from governance.rules import SubscribeDenied
from meshadmin.models import AuditEntry
from rollout import push
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_rule, make_subscription, make_topic
from tests.portal_support.mesh import mesh_redis  # noqa: F401 - a fixture: this test's key prefix and queue
from tests.portal_support.personas import client_for
from tests.portal_support.runtime import mesh_runtime, wait_for  # noqa: F401 - a fixture: a real runtime

pytestmark = pytest.mark.django_db


@pytest.fixture
def topic(payments, store):
    return make_topic(payments, store, "orders.created")


@pytest.fixture
def tracker(logistics):
    return make_app(logistics, "tracker")


@pytest.fixture
def deny(payments):
    return make_rule(payments, "orders.*", everyone=True, subscribe=True, effect=AccessRule.DENY)


def take(step: str, channel: str, user, sub: Subscription):
    """Take workflow ``step`` on ``sub`` as ``user``, by the subscription's page or the API."""
    client = client_for(user)
    if channel == "page":
        return client.post(reverse("subscriptions:subscription_transition", args=[sub.pk, step]),
                           {"comment": "ok"})
    return client.post(reverse(f"api:subscription-{step}", args=[sub.pk]), {"comment": "ok"},
                       content_type="application/json")


def approve(channel: str, user, sub: Subscription):
    return take("approve", channel, user, sub)


# -- approving ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["page", "api"])
def test_approving_a_subscription_a_deny_rule_covers_is_refused_naming_the_rule(
        channel, personas, topic, tracker, deny):
    sub = make_subscription(tracker, topic)
    response = approve(channel, personas["alice"], sub)
    assert response.status_code == 409
    text = response.json()["detail"] if channel == "api" else response.content.decode()
    assert f"access rule {deny.rule_id} (deny subscribe orders.*)" in text
    assert "denies tracker subscribing to orders.created" in text
    sub.refresh_from_db()
    assert sub.state == Subscription.REQUESTED and sub.reviewed_by is None
    assert not AuditEntry.objects.filter(object_id=str(sub.pk), action=AuditEntry.UPDATE).exists()


def test_the_inbox_row_says_which_rule_refused_the_approval(personas, topic, tracker, deny):
    sub = make_subscription(tracker, topic)
    html = client_for(personas["alice"]).post(
        reverse("subscriptions:subscription_transition", args=[sub.pk, "approve"]), {"comment": ""},
        headers={"HX-Request": "true"}).content.decode()
    assert 'data-testid="inbox-error"' in html and deny.rule_id in html
    sub.refresh_from_db()
    assert sub.state == Subscription.REQUESTED


def test_every_path_is_refused_staff_included(personas, topic, tracker, deny):
    sub = make_subscription(tracker, topic)
    with pytest.raises(SubscribeDenied, match=deny.rule_id):
        sub.approve(by=personas["sam"])
    assert Subscription.objects.get(pk=sub.pk).state == Subscription.REQUESTED


@pytest.mark.parametrize("rule", ["deny publish", "deny another application", "no rule at all",
                                  "allow only"])
def test_what_does_not_deny_subscribing_does_not_refuse(rule, personas, payments, logistics, topic, tracker):
    if rule == "deny publish":
        make_rule(payments, "orders.*", everyone=True, publish=True, effect=AccessRule.DENY)
    elif rule == "deny another application":
        make_rule(payments, "orders.*", application=make_app(logistics, "other"), subscribe=True,
                  effect=AccessRule.DENY)
    elif rule == "allow only":
        make_rule(payments, "orders.*", application=tracker, subscribe=True)
    # no rule at all: the approval is the grant (sub-<pk>), so the default deny does not apply
    sub = make_subscription(tracker, topic)
    assert approve("api", personas["alice"], sub).status_code == 200
    sub.refresh_from_db()
    assert sub.state == Subscription.ACTIVE


def test_a_deny_rule_on_another_topic_leaves_the_approval_alone(personas, payments, store, topic, tracker):
    make_topic(payments, store, "orders.shipped")
    make_rule(payments, "orders.shipped", everyone=True, subscribe=True, effect=AccessRule.DENY)
    sub = make_subscription(tracker, topic)
    assert approve("page", personas["alice"], sub).status_code == 302


# -- resuming ----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["carol", "alice"])  # either side may resume
@pytest.mark.parametrize("channel", ["page", "api"])
def test_resuming_a_paused_subscription_a_deny_rule_now_covers_is_refused_naming_the_rule(
        channel, who, personas, topic, tracker):
    sub = make_subscription(tracker, topic, Subscription.PAUSED)
    deny = make_rule(topic.team, "orders.*", everyone=True, subscribe=True, effect=AccessRule.DENY)  # after the pause
    response = take("resume", channel, personas[who], sub)
    assert response.status_code == 409
    text = response.json()["detail"] if channel == "api" else response.content.decode()
    assert f"{sub.subscription_id} cannot be resumed: access rule {deny.rule_id} (deny subscribe orders.*)" in text
    assert "denies tracker subscribing to orders.created" in text
    sub.refresh_from_db()
    assert sub.state == Subscription.PAUSED
    assert not AuditEntry.objects.filter(object_id=str(sub.pk), action=AuditEntry.UPDATE).exists()

    deny.delete()  # once the rule goes, it resumes
    assert take("resume", channel, personas[who], sub).status_code == (302 if channel == "page" else 200)
    sub.refresh_from_db()
    assert sub.state == Subscription.ACTIVE


def test_resuming_is_refused_on_every_path_staff_included(personas, topic, tracker, deny):
    sub = make_subscription(tracker, topic, Subscription.PAUSED)
    with pytest.raises(SubscribeDenied, match=f"cannot be resumed: access rule {deny.rule_id}"):
        sub.resume(by=personas["sam"])
    assert Subscription.objects.get(pk=sub.pk).state == Subscription.PAUSED


def test_a_subscription_a_deny_rule_covers_may_still_be_paused_and_revoked(personas, topic, tracker, deny):
    sub = make_subscription(tracker, topic, Subscription.ACTIVE)
    assert take("pause", "api", personas["carol"], sub).status_code == 200
    assert take("revoke", "api", personas["carol"], sub).status_code == 200
    sub.refresh_from_db()
    assert sub.state == Subscription.REVOKED


# -- held by the runtimes: the Delivery tab ---------------------------------------------------


def events(mesh_redis, key_prefix: str, *ids: str) -> None:  # noqa: F811 - the fixture's value
    for event_id in ids:
        mesh_redis.xadd(f"{key_prefix}topic:orders.created", {"event": orjson.dumps(
            {"specversion": "1.0", "id": event_id, "source": "/shop", "type": "com.example.order.created",
             "datacontenttype": "application/json", "data": {"order_id": event_id}})})


@pytest.mark.slow
def test_the_delivery_tab_says_held_and_names_the_rule_until_it_goes(
        personas, payments, topic, tracker, mesh_redis, mesh_runtime, redis_url, key_prefix, tmp_path):  # noqa: F811
    hook = mesh_runtime.receiver()
    sub = Subscription.objects.create(application=tracker, topic=topic, state=Subscription.ACTIVE,
                                      webhook_url=hook.url)
    assert push.push().outcome == "published"
    runtime = mesh_runtime.start(redis_url, key_prefix, tmp_path)
    mesh_runtime.reconciled()
    events(mesh_redis, key_prefix, "before")
    wait_for(lambda: hook.ids() == ["before"], 30, "the first event to be delivered")

    rule = make_rule(payments, "orders.*", everyone=True, subscribe=True, effect=AccessRule.DENY)
    version = push.push().version
    wait_for(lambda: runtime.config_version == version, 30, "the runtime to apply the deny rule")
    mesh_runtime.reconciled()
    url = reverse("subscriptions:subscription_delivery", args=[sub.pk])
    client = client_for(personas["carol"])

    def held_page():
        response = client.get(url)
        return response if response.context["state"].held else None

    response = wait_for(held_page, 30, "the Delivery tab to say the subscription is held")
    page = response.content.decode()
    reason = f"subscribe denied by rule {rule.rule_id} (deny orders.*)"
    assert 'data-testid="delivery-held"' in page and f"held: {reason}" in page
    assert reverse("governance:accessrule", args=[rule.pk]) in page  # a link to the rule
    events(mesh_redis, key_prefix, "held-1", "held-2")

    def waiting():  # not read (the lag), or read by a read already under way and given back (pending)
        state = client.get(url).context["state"]
        return state.lag is not None and state.lag + state.pending == 2

    wait_for(waiting, 30, "the tab to count the waiting events")
    api = client.get(f"/api/v1/subscriptions/{sub.pk}/delivery/").json()
    assert api["held"] == reason and api["lag"] + api["pending"] == 2
    assert hook.ids() == ["before"]

    rule.delete()
    version = push.push().version
    wait_for(lambda: runtime.config_version == version, 30, "the runtime to apply the rule's removal")
    wait_for(lambda: hook.ids() == ["before", "held-1", "held-2"], 30, "the held events to be delivered")
    wait_for(lambda: not client.get(url).context["state"].held, 30, "the tab to stop saying held")
    assert 'data-testid="delivery-held"' not in client.get(url).content.decode()
