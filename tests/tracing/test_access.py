"""tracing.access: who sees an event's payload, and what everyone else sees of it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from meshadmin.models import Membership
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_subscription, make_topic
from tests.portal_support.personas import make_member
from tracing.access import mask, may_see_payload, visible_topics


@pytest.fixture
def topic(payments, store):
    return make_topic(payments, store, "payments.settled")


@pytest.mark.parametrize(("persona", "sees"), [
    ("alice", True),  # owner of the topic's team
    ("bob", True),  # member
    ("dave", True),  # viewer: a member of the team all the same
    ("carol", False),  # another team, no subscription
    ("sam", True),  # staff
])
def test_the_topics_team_and_staff_see_payloads(personas, topic, persona, sees):
    assert may_see_payload(personas[persona], topic) is sees


@pytest.mark.parametrize(("state", "sees"), [
    (Subscription.ACTIVE, True),
    (Subscription.PAUSED, True),
    (Subscription.REQUESTED, False),
    (Subscription.REJECTED, False),
    (Subscription.REVOKED, False),
])
def test_a_team_sees_payloads_while_its_subscription_is_approved(carol, logistics, topic, state, sees):
    make_subscription(make_app(logistics), topic, state=state)
    assert may_see_payload(carol, topic) is sees


def test_a_subscription_to_another_topic_shows_nothing(carol, logistics, payments, store, topic):
    make_subscription(make_app(logistics), make_topic(payments, store), state=Subscription.ACTIVE)
    assert may_see_payload(carol, topic) is False


def test_a_viewer_of_the_subscribing_team_sees_payloads_too(logistics, topic):
    make_subscription(make_app(logistics), topic, state=Subscription.ACTIVE)
    erin = make_member("erin", logistics, Membership.VIEWER)
    assert may_see_payload(erin, topic) is True


def test_nobody_signed_out_or_deactivated_sees_payloads(bob, topic):
    assert may_see_payload(AnonymousUser(), topic) is False
    bob.is_active = False
    assert may_see_payload(bob, topic) is False
    assert not visible_topics(AnonymousUser()).exists()


def test_every_signed_in_user_may_watch_a_topic(carol, topic):
    assert list(visible_topics(carol)) == [topic]


def test_the_mask_keeps_public_attributes_and_the_size_only():
    attributes = {"id": "e1", "type": "t", "source": "/s", "subject": "o-1", "time": "2026-12-06T05:00:00Z",
                  "specversion": "1.0", "datacontenttype": "application/json", "customerid": "c-42",
                  "data": {"card": "4111"}}
    assert mask(attributes, 17) == {"id": "e1", "type": "t", "source": "/s", "subject": "o-1",
                                    "time": "2026-12-06T05:00:00Z", "data_size": 17}
