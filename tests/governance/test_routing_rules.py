"""Routing rules: pages and API through the generic mixins; filters, targets and cycles."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.models import RoutingRule
from governance.rules import find_routing_cycle
from tests.portal_support.factories import make_topic
from tests.portal_support.mixins import ConstantListQueries, ModelAPITests, ModelPageTests
from tests.portal_support.personas import client_for
from topics.models import Topic

pytestmark = pytest.mark.django_db


def make_route(team, source, *targets, enabled=True, order=100) -> RoutingRule:
    rule = RoutingRule.objects.create(team=team, source_pattern=source, enabled=enabled, order=order)
    rule.targets.set(targets)
    return rule


class RoutingRuleData:
    url_name = "governance:routingrule"
    api_basename = "routingrule"

    def make_object(self, team, store):
        return make_route(team, f"{team.slug}.src-{team.pk}.*", make_topic(team, store))

    def create_data(self, team, store):
        target = Topic.objects.filter(name="audit.orders").first() or make_topic(team, store, "audit.orders")
        return {"team": team.pk, "source_pattern": "orders.*", "targets": [target.pk],
                "filters": '[{"prefix": {"type": "com.example.order."}}]', "enabled": "on", "order": 10,
                "description": "keep a copy of orders"}

    def api_create_data(self, team, store):
        return {**self.create_data(team, store), "filters": [{"prefix": {"type": "com.example.order."}}],
                "enabled": True}

    def update_data(self, obj):
        return {"team": obj.team_id, "source_pattern": obj.source_pattern,
                "targets": [t.pk for t in obj.targets.all()], "filters": "[]", "order": 20, "description": "off"}

    def api_update_data(self, obj):
        return {"order": 20, "description": "reordered"}


class TestRoutingRulePages(RoutingRuleData, ConstantListQueries, ModelPageTests):
    def post(self, user, data, rule=None):
        url = reverse("governance:routingrule_edit", args=[rule.pk]) if rule else reverse("governance:routingrule_add")
        return client_for(user).post(url, data)

    def test_a_rule_whose_target_its_own_source_covers_is_refused(self, payments, store, personas):
        data = {**self.create_data(payments, store), "targets": [make_topic(payments, store, "orders.copy").pk]}
        response = self.post(personas["bob"], data)
        assert response.status_code == 400
        assert "cycle: orders.* —this rule→ orders.copy, which orders.* covers again" in response.content.decode()

    def test_a_cycle_through_other_rules_is_refused_and_named(self, payments, store, personas):
        first = make_route(payments, "audit.*", make_topic(payments, store, "archive.orders"))
        second = make_route(payments, "archive.orders", make_topic(payments, store, "orders.replayed"))
        response = self.post(personas["bob"], self.create_data(payments, store))  # orders.* -> audit.orders
        assert response.status_code == 400
        assert (f"orders.* —this rule→ audit.orders —{first.rule_id}→ archive.orders —{second.rule_id}→ "
                "orders.replayed, which orders.* covers again") in response.content.decode()
        assert RoutingRule.objects.count() == 2

    def test_disabled_rules_close_no_cycle(self, payments, store, personas):
        make_route(payments, "audit.*", make_topic(payments, store, "orders.replayed"), enabled=False)
        assert self.post(personas["bob"], self.create_data(payments, store)).status_code == 302
        disabled = {**self.create_data(payments, store), "targets": [make_topic(payments, store, "orders.x").pk]}
        disabled.pop("enabled")
        assert self.post(personas["bob"], disabled).status_code == 302  # a disabled rule routes nothing

    def test_enabling_a_rule_that_closes_a_cycle_is_refused(self, payments, store, personas):
        rule = make_route(payments, "audit.*", make_topic(payments, store, "orders.replayed"), enabled=False)
        make_route(payments, "orders.*", make_topic(payments, store, "audit.orders"))
        data = {**self.update_data(rule), "enabled": "on"}
        response = self.post(personas["bob"], data, rule)
        assert response.status_code == 400 and "cycle" in response.content.decode()
        rule.refresh_from_db()
        assert not rule.enabled

    def test_editing_a_rule_checks_against_the_others_not_its_stored_self(self, payments, store, personas):
        rule = make_route(payments, "orders.*", make_topic(payments, store, "audit.orders"))
        response = self.post(personas["bob"], {**self.update_data(rule), "enabled": "on"}, rule)
        assert response.status_code == 302

    @pytest.mark.parametrize(("filters", "message"), [
        ('[{"sql": "SELECT 1"}]', "filters[0]: the sql dialect is not supported"),
        ('[{"exact": {"type": ""}}]', "filters[0].exact.type: value must not be empty"),
        ('{"exact": {}}', "filters: must be a list of filters"),
        ("not json", "Enter a valid JSON"),
    ])
    def test_filters_are_checked_by_the_runtimes_validator(self, payments, store, personas, filters, message):
        response = self.post(personas["bob"], {**self.create_data(payments, store), "filters": filters})
        assert response.status_code == 400
        assert message in response.content.decode()

    def test_empty_filters_are_an_empty_list(self, payments, store, personas):
        assert self.post(personas["bob"], {**self.create_data(payments, store), "filters": ""}).status_code == 302
        assert RoutingRule.objects.get().filters == []

    def test_a_team_routes_only_into_its_own_topics(self, payments, logistics, store, personas):
        theirs = make_topic(logistics, store, "parcels.audit")
        response = self.post(personas["bob"], {**self.create_data(payments, store), "targets": [theirs.pk]})
        assert response.status_code == 400
        assert "Payments does not own parcels.audit" in response.content.decode()
        data = {**self.create_data(payments, store), "targets": [theirs.pk]}
        assert self.post(personas["sam"], data).status_code == 302

    def test_a_target_must_exist(self, payments, store, personas):
        response = self.post(personas["bob"], {**self.create_data(payments, store), "targets": [999999]})
        assert response.status_code == 400 and 'data-testid="error-targets"' in response.content.decode()


class TestRoutingRuleAPI(RoutingRuleData, ModelAPITests):
    def test_api_refuses_a_cycle_naming_it(self, payments, store, personas):
        make_route(payments, "audit.*", make_topic(payments, store, "orders.replayed"))
        response = client_for(personas["bob"]).post(reverse("api:routingrule-list"),
                                                    self.api_create_data(payments, store),
                                                    content_type="application/json")
        assert response.status_code == 400
        assert "orders.* —this rule→ audit.orders —route-" in response.json()["targets"][0]

    def test_api_patch_of_the_source_alone_is_checked_for_cycles(self, payments, store, personas):
        rule = make_route(payments, "orders.*", make_topic(payments, store, "audit.orders"))
        response = client_for(personas["bob"]).patch(reverse("api:routingrule-detail", args=[rule.pk]),
                                                     {"source_pattern": "audit.*"}, content_type="application/json")
        assert response.status_code == 400 and "cycle" in response.json()["targets"][0]

    def test_api_refuses_bad_filters_naming_the_path(self, payments, store, personas):
        data = {**self.api_create_data(payments, store), "filters": [{"any": []}]}
        response = client_for(personas["bob"]).post(reverse("api:routingrule-list"), data,
                                                    content_type="application/json")
        assert response.status_code == 400
        assert response.json()["filters"] == ["filters[0].any: must contain at least one filter."]


def test_find_routing_cycle_returns_the_shortest_path(payments, store):
    make_topic(payments, store, "t.a")
    first = make_route(payments, "t.a", make_topic(payments, store, "t.b"))
    make_route(payments, "t.b", make_topic(payments, store, "t.c"))
    make_route(payments, "t.c", make_topic(payments, store, "s.far"))
    near = make_route(payments, "t.b", make_topic(payments, store, "s.near"))
    assert find_routing_cycle("s.*", ["t.a"]) == ["t.a", first.rule_id, "t.b", near.rule_id, "s.near"]
    assert find_routing_cycle("x.*", ["t.a"]) is None
