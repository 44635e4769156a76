"""Applications: pages and API through the generic mixins, and what an application's page shows.
"""

from __future__ import annotations

import itertools

import pytest
from django.urls import reverse

from governance.models import AccessRule, Application
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_key, make_rule, make_subscription, make_topic
from tests.portal_support.mixins import ConstantListQueries, ModelAPITests, ModelPageTests
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db
_numbers = itertools.count(1)

# Applications


class ApplicationData:
    url_name = "governance:application"
    api_basename = "application"

    def make_object(self, team, store):
        return Application.objects.create(name=f"{team.slug}-app-{next(_numbers)}", team=team)

    def create_data(self, team, store):
        return {"name": "billing", "team": team.pk, "description": "Bills customers.", "contact": "billing@example.com"}

    def update_data(self, obj):
        return {"name": obj.name, "team": obj.team_id, "description": "Now documented.", "contact": "ops@example.com"}

    def api_update_data(self, obj):
        return {"description": "Changed through the API."}


class TestApplicationPages(ApplicationData, ConstantListQueries, ModelPageTests):
    def test_a_name_must_be_lowercase_letters_digits_and_dashes(self, payments, store, personas):
        data = {**self.create_data(payments, store), "name": "Billing App"}
        response = client_for(personas["bob"]).post(reverse("governance:application_add"), data)
        assert response.status_code == 400
        assert "lowercase letters, digits and" in response.content.decode()

    def test_an_application_with_subscriptions_cannot_be_deleted(self, payments, store, personas):
        app = make_app(payments)
        make_subscription(app, make_topic(payments, store))
        response = client_for(personas["bob"]).post(reverse("governance:application_delete", args=[app.pk]),
                                                     follow=True)
        assert "cannot be deleted" in response.content.decode()
        assert Application.objects.filter(pk=app.pk).exists()


class TestApplicationAPI(ApplicationData, ModelAPITests):
    pass


class TestApplicationPage:
    """The page lists its subscriptions, its keys (for its team only), the rules that apply to it
    and what it may do."""

    @pytest.fixture
    def billing(self, payments):
        return make_app(payments, "billing")

    def test_it_lists_its_subscriptions_with_their_state(self, billing, payments, store, personas):
        sub = make_subscription(billing, make_topic(payments, store, "orders.created"), Subscription.PAUSED)
        html = client_for(personas["dave"]).get(billing.get_absolute_url()).content.decode()
        table = html.split('data-testid="application-subscriptions"')[1].split("</table>")[0]
        assert "orders.created" in table and ">paused<" in table and sub.get_absolute_url() in table

    def test_it_shows_keys_to_its_team_and_hides_them_from_others(self, billing, personas):
        key = make_key(billing, description="production")
        team_view = client_for(personas["dave"]).get(billing.get_absolute_url()).content.decode()
        assert key.prefix in team_view and "production" in team_view
        outsider_view = client_for(personas["carol"]).get(billing.get_absolute_url()).content.decode()
        assert key.prefix not in outsider_view and 'data-testid="application-keys"' not in outsider_view

    def test_only_editors_see_the_new_key_button(self, billing, personas):
        new_key = reverse("governance:applicationkey_add") + f"?application={billing.pk}"
        assert new_key in client_for(personas["bob"]).get(billing.get_absolute_url()).content.decode()
        assert new_key not in client_for(personas["dave"]).get(billing.get_absolute_url()).content.decode()

    def test_it_lists_the_compiled_rules_that_apply_and_what_it_may_do(self, billing, payments, logistics,
                                                                     store, personas):
        make_topic(payments, store, "orders.created")
        make_topic(payments, store, "orders.shipped")
        make_topic(payments, store, "ledger.posted")
        own = make_rule(payments, "orders.*", application=billing, publish=True)
        team_rule = make_rule(payments, "ledger.posted", principal_team=payments, subscribe=True)
        deny = make_rule(payments, "orders.shipped", everyone=True, publish=True, effect=AccessRule.DENY)
        other = make_rule(logistics, "orders.created", application=make_app(logistics), publish=True)
        html = client_for(personas["carol"]).get(billing.get_absolute_url()).content.decode()
        for rule in (own, team_rule, deny):
            assert f'data-testid="rule-{rule.rule_id}"' in html
        assert f'data-testid="rule-{other.rule_id}"' not in html
        may_publish = html.split('data-testid="may-publish"')[1].split("</div>")[0]
        may_subscribe = html.split('data-testid="may-subscribe"')[1].split("</div>")[0]
        assert "orders.created" in may_publish and "orders.shipped" not in may_publish
        assert "ledger.posted" in may_subscribe and "orders.created" not in may_subscribe
