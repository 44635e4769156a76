"""Applications: pages and API through the generic mixins, and what an application's page shows.

This module also holds the helpers that the issue-3 test modules share (factories, the
constant-queries mixin, eager Celery): tests/portal/mixins.py belongs to the foundation.
"""

from __future__ import annotations

import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from governance.models import AccessRule, Application, ApplicationKey
from meshadmin import celery_app
from subscriptions.models import Subscription
from topics.models import Topic

from .conftest import client_for
from .mixins import ModelAPITests, ModelPageTests

pytestmark = pytest.mark.django_db

_numbers = itertools.count(1)


# Shared helpers


# Test data is made with bulk_create, which sends no signal: setting up a test writes no audit
# entry, so a test can count the entries its own requests write.


def make_app(team, name: str | None = None) -> Application:
    [app] = Application.objects.bulk_create([Application(name=name or f"{team.slug}-app-{next(_numbers)}",
                                                         team=team)])
    return app


def make_topic(team, store, name: str | None = None, **extra) -> Topic:
    [topic] = Topic.objects.bulk_create([Topic(name=name or f"{team.slug}.topic-{next(_numbers)}", team=team,
                                               store=store, **extra)])
    return topic


def make_subscription(application, topic, state: str = Subscription.REQUESTED, **extra) -> Subscription:
    return Subscription.objects.create(application=application, topic=topic, state=state,
                                       webhook_url="https://hooks.example.com/events", **extra)


def make_rule(team, pattern: str, *, application=None, principal_team=None, everyone=False,
              publish=False, subscribe=False, effect=AccessRule.ALLOW) -> AccessRule:
    kind = AccessRule.EVERYONE if everyone else AccessRule.TEAM if principal_team else AccessRule.APPLICATION
    return AccessRule.objects.create(team=team, principal_kind=kind, principal_application=application,
                                     principal_team=principal_team, topic_pattern=pattern, publish=publish,
                                     subscribe=subscribe, effect=effect)


@pytest.fixture
def eager_celery():
    """Tasks enqueued with .delay() run at once, in this process, and raise their errors."""
    conf = celery_app.conf
    saved = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager = conf.task_eager_propagates = True
    yield
    conf.task_always_eager, conf.task_eager_propagates = saved


class ConstantListQueries:
    """The list page runs as many SQL queries for 30 rows as for 3 (no query per row)."""

    list_user = "bob"

    def make_row(self, team, store):
        return self.make_object(team, store)

    def test_list_page_runs_a_constant_number_of_queries(self, payments, store, personas,
                                                         django_assert_num_queries):
        client = client_for(personas[self.list_user])
        url = reverse(f"{self.url_name}_list")
        for _ in range(3):
            self.make_row(payments, store)
        client.get(url)  # first request of the session: warms caches that are not per row
        with CaptureQueriesContext(connection) as few:
            assert "3 results" in client.get(url).content.decode()
        for _ in range(27):
            self.make_row(payments, store)
        with django_assert_num_queries(len(few)):
            response = client.get(url)
        assert "30 results" in response.content.decode()


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
        key = ApplicationKey(application=billing, description="production")
        key.generate()
        key.save()
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
