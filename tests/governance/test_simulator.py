"""The rules as the mesh receives them, the simulator (page and API), and who may do what on the
topic and application pages."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.models import AccessRule
from governance.rules import compiled_access_rules
from meshruntime.policy import Policy
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_rule, make_subscription, make_topic
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def mesh(payments, logistics, store):
    """billing and ledger (Payments), tracker (Logistics); topics orders.created, orders.shipped,
    audit.log; some rules and subscriptions."""
    billing, ledger, tracker = make_app(payments, "billing"), make_app(payments, "ledger"), make_app(logistics,
                                                                                                     "tracker")
    created = make_topic(payments, store, "orders.created")
    make_topic(payments, store, "orders.shipped")
    audit = make_topic(payments, store, "audit.log")
    return {
        "apps": (billing, ledger, tracker),
        "publish": make_rule(payments, "orders.*", principal_team=payments, publish=True),
        "deny": make_rule(payments, "orders.shipped", application=ledger, publish=True, effect=AccessRule.DENY),
        "everyone": make_rule(payments, "audit.log", everyone=True, subscribe=True),
        "sub": make_subscription(tracker, created, Subscription.ACTIVE),
        "paused": make_subscription(billing, audit, Subscription.PAUSED),
        "requested": make_subscription(ledger, created, Subscription.REQUESTED),
        "revoked": make_subscription(tracker, audit, Subscription.REVOKED),
    }


class TestCompiledAccessRules:
    def test_rules_and_live_subscriptions_in_the_contracts_shape(self, mesh):
        rules = {rule["id"]: rule for rule in compiled_access_rules()}
        publish, deny, everyone = mesh["publish"], mesh["deny"], mesh["everyone"]
        assert rules[publish.rule_id] == {"id": publish.rule_id, "principals": ["billing", "ledger"],
                                          "topic": "orders.*", "actions": ["publish"], "effect": "allow",
                                          "description": ""}
        assert rules[deny.rule_id]["principals"] == ["ledger"] and rules[deny.rule_id]["effect"] == "deny"
        assert rules[everyone.rule_id]["principals"] == "*"
        sub, paused = mesh["sub"], mesh["paused"]
        assert rules[f"sub-{sub.pk}"] == {"id": f"sub-{sub.pk}", "principals": ["tracker"], "topic": "orders.created",
                                         "actions": ["subscribe"], "effect": "allow",
                                         "description": f"approved subscription sub-{sub.pk}"}
        assert f"sub-{paused.pk}" in rules  # paused keeps its grant (and its position)
        assert f"sub-{mesh['requested'].pk}" not in rules and f"sub-{mesh['revoked'].pk}" not in rules

    def test_the_list_is_sorted_by_id_and_the_same_every_time(self, mesh):
        rules = compiled_access_rules()
        assert [rule["id"] for rule in rules] == sorted(rule["id"] for rule in rules)
        assert compiled_access_rules() == rules
        Policy.from_rules(rules)  # the runtime's evaluator accepts every rule

    def test_a_team_rule_for_a_team_without_applications_is_left_out(self, mesh, store):
        from meshadmin.models import Team

        empty = Team.objects.create(name="Empty", slug="empty")
        rule = make_rule(empty, "audit.log", principal_team=empty, subscribe=True)
        assert rule.rule_id not in {r["id"] for r in compiled_access_rules()}

    def test_it_costs_three_queries_whatever_the_number_of_rules(self, mesh, payments, django_assert_num_queries):
        with django_assert_num_queries(3):
            compiled_access_rules()
        for index in range(20):
            make_rule(payments, f"bulk.topic-{index}", principal_team=payments, publish=True)
        with django_assert_num_queries(3):
            compiled_access_rules()


class TestSimulatorPage:
    def ask(self, user, application, topic, action):
        return client_for(user).get(reverse("governance:simulator"),
                                    {"application": application, "topic": topic, "action": action})

    def test_an_allow_rule_decides(self, mesh, personas):
        html = self.ask(personas["carol"], "billing", "orders.created", "publish").content.decode()
        decision = html.split('data-testid="decision">')[1].split("</div>")[0]
        assert "Allowed" in decision and f"Allowed by rule {mesh['publish'].rule_id} (orders.*)" in decision
        assert f'data-testid="rule-{mesh["publish"].rule_id}"' in html

    def test_deny_beats_allow_and_every_matching_rule_is_listed_deciding_first(self, mesh, personas):
        html = self.ask(personas["carol"], "ledger", "orders.shipped", "publish").content.decode()
        deny, allow = mesh["deny"].rule_id, mesh["publish"].rule_id
        assert "Denied" in html and f"Denied by rule {deny} (orders.shipped)" in html
        assert html.index(f'data-testid="rule-{deny}"') < html.index(f'data-testid="rule-{allow}"')
        assert "deciding</span>" in html.split(f'data-testid="rule-{deny}"')[1].split("</tr>")[0]

    def test_an_approved_subscription_grants_subscribe_and_is_named(self, mesh, personas):
        html = self.ask(personas["bob"], "tracker", "orders.created", "subscribe").content.decode()
        sub = mesh["sub"]
        assert f"Allowed by rule sub-{sub.pk}" in html and sub.get_absolute_url() in html

    def test_nothing_matches_means_default_deny(self, mesh, personas):
        html = self.ask(personas["bob"], "tracker", "orders.shipped", "publish").content.decode()
        assert "Denied" in html and "no rule matches (default deny)" in html and "No rule matched" in html

    def test_a_topic_not_yet_in_the_catalog_can_be_simulated(self, mesh, personas):
        html = self.ask(personas["bob"], "billing", "orders.refunded", "publish").content.decode()
        assert "Allowed" in html and "orders.refunded is not in the catalog yet" in html

    @pytest.mark.parametrize(("application", "topic", "action", "field"), [
        ("billing", "Orders Created", "publish", "topic"),
        ("nobody", "orders.created", "publish", "application"),
        ("billing", "orders.created", "delete", "action"),
    ])
    def test_bad_questions_answer_400_naming_the_field(self, mesh, personas, application, topic, action, field):
        response = self.ask(personas["bob"], application, topic, action)
        assert response.status_code == 400 and f'data-testid="error-{field}"' in response.content.decode()

    def test_the_empty_form_asks_nothing(self, mesh, personas):
        response = client_for(personas["dave"]).get(reverse("governance:simulator"))
        assert response.status_code == 200 and 'data-testid="decision"' not in response.content.decode()


class TestSimulatorAPI:
    def ask(self, user, **params):
        return client_for(user).get(reverse("api:simulator"), params)

    def test_it_answers_the_decision_the_deciding_rule_and_every_match(self, mesh, personas):
        body = self.ask(personas["carol"], application="ledger", topic="orders.shipped", action="publish").json()
        deny, allow = mesh["deny"], mesh["publish"]
        assert body["allowed"] is False and body["reason"] == f"denied by rule {deny.rule_id} (orders.shipped)"
        assert body["deciding_rule"]["id"] == deny.rule_id and body["deciding_rule"]["url"] == deny.get_absolute_url()
        assert [rule["id"] for rule in body["matched"]] == [deny.rule_id, allow.rule_id]

    def test_default_deny_has_no_deciding_rule(self, mesh, personas):
        body = self.ask(personas["carol"], application="tracker", topic="orders.shipped", action="publish").json()
        assert body == {"application": "tracker", "topic": "orders.shipped", "action": "publish", "allowed": False,
                        "reason": "denied: no rule matches (default deny)", "deciding_rule": None, "matched": [],
                        "routes": []}

    def test_bad_parameters_answer_400_per_field(self, mesh, personas):
        response = self.ask(personas["carol"], application="nobody", topic="Bad Topic", action="fly")
        assert response.status_code == 400 and set(response.json()) == {"application", "topic", "action"}

    def test_anonymous_requests_get_401(self, mesh, client):
        assert client.get(reverse("api:simulator"), {"application": "billing"}).status_code == 401


class TestWhoMay:
    def test_the_topic_page_says_who_may_publish_and_subscribe(self, mesh, personas):
        topic = mesh["sub"].topic  # orders.created
        html = client_for(personas["carol"]).get(topic.get_absolute_url()).content.decode()
        publish = html.split('data-testid="who-may-publish"')[1].split("</div>")[0]
        subscribe = html.split('data-testid="who-may-subscribe"')[1].split("</div>")[0]
        assert "billing" in publish and "ledger" in publish and "tracker" not in publish
        assert "tracker" in subscribe and "billing" not in subscribe

    def test_a_deny_rule_removes_an_application_from_the_topic_page(self, mesh, personas):
        from topics.models import Topic

        html = client_for(personas["bob"]).get(Topic.objects.get(name="orders.shipped").get_absolute_url())
        publish = html.content.decode().split('data-testid="who-may-publish"')[1].split("</div>")[0]
        assert "billing" in publish and "ledger" not in publish
