"""Validation warnings: on the Validation page and on the objects concerned."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.models import AccessRule, RoutingRule
from governance.validation import TITLES, all_findings
from meshadmin.models import Membership, Team
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_rule, make_subscription, make_topic
from tests.portal_support.mixins import page_after_constant_queries
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db

YESTERDAY = timezone.localdate() - timedelta(days=1)
NEXT_YEAR = timezone.localdate() + timedelta(days=365)


def findings(user, code):
    return [f for f in all_findings(user) if f.code == code]


def page(user, url=None):
    return client_for(user).get(url or reverse("governance:validation")).content.decode()


class TestSubscriptionDeniedByARule:
    @pytest.fixture
    def denied(self, payments, logistics, store):
        topic = make_topic(payments, store, "orders.created")
        app = make_app(logistics, "tracker")
        rule = make_rule(payments, "orders.*", application=app, subscribe=True, effect=AccessRule.DENY)
        return make_subscription(app, topic, Subscription.ACTIVE), rule

    def test_it_is_found_and_names_the_rule(self, denied, personas):
        sub, rule = denied
        [finding] = findings(personas["alice"], "subscription_denied")
        assert finding.obj == sub and f"rule {rule.rule_id} denies it" in finding.message

    def test_it_shows_on_the_validation_page_and_on_the_objects(self, denied, personas):
        sub, rule = denied
        assert 'data-testid="finding-subscription_denied"' in page(personas["carol"])
        for url in (sub.get_absolute_url(), sub.application.get_absolute_url(), sub.topic.get_absolute_url()):
            html = page(personas["carol"], url)
            assert 'data-testid="finding-subscription_denied"' in html and rule.rule_id in html, url

    def test_a_request_is_warned_about_too(self, denied, personas):
        sub, _ = denied
        Subscription.objects.filter(pk=sub.pk).update(state=Subscription.REQUESTED)
        assert findings(personas["alice"], "subscription_denied")

    def test_each_state_is_told_what_the_rule_means_for_it(self, denied, personas):
        sub, _ = denied
        outcomes = {Subscription.REQUESTED: "It cannot be approved until the rule changes.",
                    Subscription.PAUSED: "It cannot be resumed until the rule changes.",
                    Subscription.ACTIVE: "The runtimes hold its delivery"}
        for state, outcome in outcomes.items():
            Subscription.objects.filter(pk=sub.pk).update(state=state)
            [finding] = findings(personas["alice"], "subscription_denied")
            assert outcome in finding.message, state

    def test_an_allowed_or_closed_subscription_is_not_warned_about(self, denied, personas):
        sub, rule = denied
        Subscription.objects.filter(pk=sub.pk).update(state=Subscription.REVOKED)
        assert not findings(personas["alice"], "subscription_denied")
        Subscription.objects.filter(pk=sub.pk).update(state=Subscription.ACTIVE)
        AccessRule.objects.filter(pk=rule.pk).update(effect=AccessRule.ALLOW)
        assert not findings(personas["alice"], "subscription_denied")

    def test_outsiders_do_not_see_it(self, denied, erin):
        assert not findings(erin, "subscription_denied")
        assert 'data-testid="finding-subscription_denied"' not in page(erin)


class TestRoutingIntoADeprecatedTopic:
    def test_it_is_found_and_shown_on_the_rule(self, payments, store, personas):
        old = make_topic(payments, store, "audit.legacy", lifecycle="deprecated", sunset=NEXT_YEAR)
        fresh = make_topic(payments, store, "audit.orders")
        rule = RoutingRule.objects.create(team=payments, source_pattern="orders.*")
        rule.targets.set([old, fresh])
        [finding] = findings(personas["carol"], "route_to_deprecated")
        assert finding.obj == rule and "deprecated topic audit.legacy" in finding.message
        assert "audit.orders" not in finding.message
        assert 'data-testid="finding-route_to_deprecated"' in page(personas["carol"], rule.get_absolute_url())

    def test_a_rule_into_active_topics_is_fine(self, payments, store, personas):
        rule = RoutingRule.objects.create(team=payments, source_pattern="orders.*")
        rule.targets.set([make_topic(payments, store)])
        assert not findings(personas["carol"], "route_to_deprecated")
        assert 'data-testid="finding-' not in page(personas["carol"], rule.get_absolute_url())


class TestSubscriptionPastSunset:
    @pytest.mark.parametrize(("sunset", "state", "warned"), [
        (YESTERDAY, Subscription.ACTIVE, True),
        (YESTERDAY, Subscription.PAUSED, True),
        (YESTERDAY, Subscription.REVOKED, False),
        (NEXT_YEAR, Subscription.ACTIVE, False),
    ])
    def test_a_live_subscription_to_a_topic_past_its_sunset(self, payments, store, personas, sunset, state, warned):
        topic = make_topic(payments, store, "orders.v1", lifecycle="deprecated", sunset=sunset)
        sub = make_subscription(make_app(payments), topic, state)
        found = findings(personas["bob"], "subscription_past_sunset")
        assert [f.obj for f in found] == ([sub] if warned else [])
        assert ('data-testid="finding-subscription_past_sunset"' in page(personas["bob"], sub.get_absolute_url())) \
            is warned


class TestTeamWithoutOwner:
    def test_a_team_whose_owner_left_is_found(self, payments, logistics, personas):
        Membership.objects.filter(team=payments, role=Membership.OWNER).delete()
        teams = [f.obj for f in findings(personas["bob"], "team_without_owner")]
        assert payments in teams
        assert logistics in teams  # carol is a member; nobody owns it
        html = page(personas["bob"])
        assert "Payments has no owner" in html

    def test_owned_teams_are_fine(self, payments, personas):
        assert payments not in [f.obj for f in findings(personas["bob"], "team_without_owner")]


class TestValidationPage:
    def test_it_counts_every_warning_and_says_none_per_empty_group(self, payments, personas):
        Team.objects.create(name="Orphans", slug="orphans")
        html = page(personas["alice"])
        total = html.split('data-testid="finding-total">')[1].split("<")[0]
        assert total == str(len(all_findings(personas["alice"])))
        assert html.count("None.") == len(TITLES) - 1  # every other kind

    def test_it_runs_a_constant_number_of_queries(self, payments, logistics, store, personas,
                                                 django_assert_num_queries):
        def add(count):
            for _ in range(count):
                old = make_topic(payments, store, lifecycle="deprecated", sunset=YESTERDAY)
                app = make_app(payments)
                make_rule(payments, old.name, application=app, subscribe=True, effect=AccessRule.DENY)
                make_subscription(app, old, Subscription.ACTIVE)
                rule = RoutingRule.objects.create(team=payments, source_pattern="x.*")
                rule.targets.set([old])
                Team.objects.create(name=f"Orphan {old.pk}", slug=f"orphan-{old.pk}")

        html = page_after_constant_queries(client_for(personas["bob"]), reverse("governance:validation"), add,
                                           django_assert_num_queries)
        assert html.count('data-testid="finding-subscription_denied"') == 30
        assert html.count('data-testid="finding-route_to_deprecated"') == 30
