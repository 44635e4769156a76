"""The API offers exactly the related objects the pages offer, to every persona.

Forms and serializers narrow their related fields through one rule (meshadmin.choices); these
tests hold each model's form and serializer side by side, so neither can drift from the other.
"""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from governance.api.serializers import (
    AccessRuleSerializer,
    ApplicationKeySerializer,
    ApplicationSerializer,
    RoutingRuleSerializer,
)
from governance.forms import AccessRuleForm, ApplicationForm, ApplicationKeyForm, RoutingRuleForm
from meshadmin.api.core import MembershipSerializer
from meshadmin.forms import MembershipForm
from subscriptions.api.serializers import SubscriptionSerializer
from subscriptions.forms import SubscriptionForm
from tests.portal_support.factories import make_app, make_topic
from topics.api.serializers import TopicSerializer
from topics.forms import TopicForm

pytestmark = pytest.mark.django_db

PAIRS = [
    (MembershipForm, MembershipSerializer), (TopicForm, TopicSerializer),
    (ApplicationForm, ApplicationSerializer), (ApplicationKeyForm, ApplicationKeySerializer),
    (AccessRuleForm, AccessRuleSerializer), (RoutingRuleForm, RoutingRuleSerializer),
    (SubscriptionForm, SubscriptionSerializer),
]


@pytest.fixture
def world(payments, logistics, store, personas):
    for team in (payments, logistics):
        make_app(team)
        make_topic(team, store)
    return personas


def form_choices(form_class, user) -> dict[str, set]:
    form = form_class(user=user)
    return {name: set(field.queryset) for name, field in form.fields.items() if hasattr(field, "queryset")}


def serializer_choices(serializer_class, user, names) -> dict[str, set]:
    request = RequestFactory().post("/")
    request.user = user
    serializer = serializer_class(context={"request": request})
    return {name: set(serializer.pickable(name).all()) for name in names}


@pytest.mark.parametrize("persona", ["alice", "bob", "carol", "dave", "sam"])
@pytest.mark.parametrize("form_class, serializer_class", PAIRS, ids=[form.__name__ for form, _ in PAIRS])
def test_a_new_objects_form_and_api_offer_the_same_related_objects(world, persona, form_class, serializer_class):
    user = world[persona]
    on_the_page = form_choices(form_class, user)
    assert on_the_page, f"{form_class.__name__} has no related field"
    assert serializer_choices(serializer_class, user, on_the_page) == on_the_page


def test_a_key_or_subscription_is_for_an_application_the_user_may_change(world, payments):
    """A viewer sees Payments' application, but may not pick it; a member may."""
    for form_class, serializer_class in [(ApplicationKeyForm, ApplicationKeySerializer),
                                         (SubscriptionForm, SubscriptionSerializer)]:
        assert form_choices(form_class, world["dave"])["application"] == set()
        assert {app.team for app in form_choices(form_class, world["bob"])["application"]} == {payments}
        assert {app.team for app in serializer_choices(serializer_class, world["bob"], ["application"])[
            "application"]} == {payments}
