"""Access rules: pages and API through the generic mixins, and who may write which pattern."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.models import AccessRule
from tests.portal_support.factories import make_app, make_rule, make_topic
from tests.portal_support.mixins import ConstantListQueries, ModelAPITests, ModelPageTests
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db


class AccessRuleData:
    url_name = "governance:accessrule"
    api_basename = "accessrule"

    def make_object(self, team, store):
        topic = make_topic(team, store)
        return AccessRule.objects.create(team=team, principal_application=make_app(team), topic_pattern=topic.name,
                                         publish=True)

    def create_data(self, team, store):
        return {"team": team.pk, "principal_kind": "application", "principal_application": make_app(team).pk,
                "topic_pattern": make_topic(team, store).name, "publish": "on", "effect": "allow",
                "description": "billing publishes"}

    def api_create_data(self, team, store):
        return {**self.create_data(team, store), "publish": True}

    def update_data(self, obj):
        return {"team": obj.team_id, "principal_kind": "application", "principal_application":
                obj.principal_application_id, "topic_pattern": obj.topic_pattern, "publish": "on",
                "subscribe": "on", "effect": "allow", "description": "and subscribes"}

    def api_update_data(self, obj):
        return {"subscribe": True, "description": "and subscribes"}


class TestAccessRulePages(AccessRuleData, ConstantListQueries, ModelPageTests):
    def post(self, user, data):
        return client_for(user).post(reverse("governance:accessrule_add"), data)

    def test_a_team_writes_a_rule_for_a_prefix_under_which_every_topic_is_its_own(self, payments, store,
                                                                                   personas):
        make_topic(payments, store, "orders.created")
        make_topic(payments, store, "orders.eu.shipped")
        data = {**self.create_data(payments, store), "topic_pattern": "orders.*"}
        assert self.post(personas["bob"], data).status_code == 302
        assert AccessRule.objects.get().topic_pattern == "orders.*"

    @pytest.mark.parametrize(("pattern", "message"), [
        ("parcels.sent", "parcels.sent belongs to Logistics, not to Payments"),
        ("orders.*", "orders.* also covers topics that Payments does not own (orders.returned)"),
        ("nothing.here", "There is no topic nothing.here"),
        ("*", "Only staff may write a rule for every topic"),
    ])
    def test_a_team_may_not_write_rules_for_topics_it_does_not_own(self, payments, logistics, store, personas,
                                                                   pattern, message):
        make_topic(payments, store, "orders.created")
        make_topic(logistics, store, "orders.returned")
        make_topic(logistics, store, "parcels.sent")
        response = self.post(personas["alice"], {**self.create_data(payments, store), "topic_pattern": pattern})
        assert response.status_code == 400
        assert message in response.content.decode()
        assert not AccessRule.objects.exists()

    def test_staff_write_rules_for_any_pattern(self, payments, logistics, store, personas):
        make_topic(logistics, store, "parcels.sent")
        for pattern in ("*", "parcels.sent", "parcels.*"):
            data = {**self.create_data(payments, store), "topic_pattern": pattern}
            assert self.post(personas["sam"], data).status_code == 302, pattern
        assert AccessRule.objects.count() == 3

    def test_editing_a_rule_to_another_teams_topic_is_refused(self, obj, logistics, store, personas):
        make_topic(logistics, store, "parcels.sent")
        data = {**self.update_data(obj), "topic_pattern": "parcels.sent"}
        response = client_for(personas["bob"]).post(reverse("governance:accessrule_edit", args=[obj.pk]), data)
        assert response.status_code == 400
        obj.refresh_from_db()
        assert obj.topic_pattern != "parcels.sent"

    def test_a_rule_may_name_another_teams_application_on_its_own_topic(self, payments, logistics, store,
                                                                       personas):
        data = {**self.create_data(payments, store), "principal_application": make_app(logistics).pk}
        assert self.post(personas["bob"], data).status_code == 302

    @pytest.mark.parametrize(("change", "field", "message"), [
        ({"topic_pattern": "Or ders.*"}, "topic_pattern", "must be &#x27;*&#x27;, &#x27;&lt;name&gt;.*&#x27;"),
        ({"publish": ""}, "publish", "Choose at least one action"),
        ({"principal_application": ""}, "principal_application", "Choose the application"),
        ({"principal_kind": "team"}, "principal_team", "Choose the team"),
        ({"principal_kind": "everyone"}, "principal_application", "A rule for everyone names no application"),
    ])
    def test_the_form_names_the_field_and_the_rule(self, payments, store, personas, change, field, message):
        response = self.post(personas["bob"], {**self.create_data(payments, store), **change})
        assert response.status_code == 400
        html = response.content.decode()
        assert f'data-testid="error-{field}"' in html and message in html

    def test_list_filters_by_action_and_effect(self, payments, store, personas):
        app = make_app(payments)
        make_topic(payments, store, "a.b")
        publish = make_rule(payments, "a.b", application=app, publish=True)
        deny = make_rule(payments, "a.b", application=app, subscribe=True, effect=AccessRule.DENY)
        client = client_for(personas["dave"])
        html = client.get(reverse("governance:accessrule_list"), {"action": "publish"}).content.decode()
        assert publish.rule_id in html and deny.rule_id not in html
        html = client.get(reverse("governance:accessrule_list"), {"effect": "deny"}).content.decode()
        assert deny.rule_id in html and publish.rule_id not in html

    def test_the_page_shows_the_compiled_rule_and_the_topics_it_covers(self, payments, store, personas):
        make_topic(payments, store, "orders.created")
        make_topic(payments, store, "ordersx.created")
        make_app(payments, "billing")
        make_app(payments, "shipping")
        rule = make_rule(payments, "orders.*", principal_team=payments, publish=True)
        html = client_for(personas["carol"]).get(rule.get_absolute_url()).content.decode()
        compiled = html.split('data-testid="compiled-rule">')[1].split("</pre>")[0]
        assert "billing" in compiled and "shipping" in compiled and rule.rule_id in compiled
        assert "orders.created" in html and "ordersx.created" not in html


class TestAccessRuleAPI(AccessRuleData, ModelAPITests):
    @pytest.mark.parametrize(("pattern", "message"), [
        ("parcels.sent", "belongs to Logistics"),
        ("*", "Only staff may write a rule for every topic"),
    ])
    def test_api_applies_the_same_authority_rules(self, payments, logistics, store, personas, pattern, message):
        make_topic(logistics, store, "parcels.sent")
        data = {**self.api_create_data(payments, store), "topic_pattern": pattern}
        response = client_for(personas["bob"]).post(reverse("api:accessrule-list"), data,
                                                    content_type="application/json")
        assert response.status_code == 400
        assert message in response.json()["topic_pattern"][0]

    def test_api_patch_of_the_pattern_alone_is_checked(self, obj, logistics, store, personas):
        make_topic(logistics, store, "parcels.sent")
        response = client_for(personas["bob"]).patch(reverse("api:accessrule-detail", args=[obj.pk]),
                                                     {"topic_pattern": "parcels.sent"}, content_type="application/json")
        assert response.status_code == 400

    def test_api_model_rules_answer_400_naming_the_field(self, payments, store, personas):
        data = {**self.api_create_data(payments, store), "principal_kind": "team"}
        response = client_for(personas["bob"]).post(reverse("api:accessrule-list"), data,
                                                    content_type="application/json")
        assert response.status_code == 400 and "principal_team" in response.json()

    def test_api_lists_the_rule_id(self, obj, personas):
        body = client_for(personas["carol"]).get(reverse("api:accessrule-detail", args=[obj.pk])).json()
        assert body["rule_id"] == f"rule-{obj.pk}"
