from __future__ import annotations

import pytest
from django.urls import reverse

from meshadmin.models import AuditEntry
from tests.portal_support.mixins import ModelAPITests, ModelPageTests
from tests.portal_support.personas import client_for
from topics.models import Tag, Topic

pytestmark = pytest.mark.django_db

_counter = iter(range(1_000_000))


class TopicData:
    url_name = "topics:topic"
    api_basename = "topic"

    def make_object(self, team, store):
        return Topic.objects.create(name=f"{team.slug}.thing-{next(_counter)}", team=team, store=store)

    def create_data(self, team, store):
        return {"name": "orders.eu.created", "team": team.pk, "store": store.pk, "lifecycle": "active",
                "description": "Orders placed in the EU."}

    def update_data(self, obj):
        return {"name": obj.name, "team": obj.team_id, "store": obj.store_id, "lifecycle": "active",
                "description": "Now with a description.", "tags": "eu, billing"}

    def api_update_data(self, obj):
        return {"description": "Changed through the API.", "tags": ["eu"]}


class TestTopicPages(TopicData, ModelPageTests):
    def test_search_finds_topics_by_name_description_and_tag(self, payments, store, personas):
        a = Topic.objects.create(name="orders.created", team=payments, store=store, description="placed")
        b = Topic.objects.create(name="invoices.sent", team=payments, store=store, description="mailed")
        b.tags.add(Tag.objects.create(name="finance"))
        client = client_for(personas["carol"])
        for query, expected, absent in (("orders", a, b), ("mailed", b, a), ("finance", b, a)):
            html = client.get(reverse("topics:topic_list"), {"q": query}).content.decode()
            assert expected.name in html and absent.name not in html, query

    def test_filters_by_team_lifecycle_and_tag(self, payments, logistics, store, personas):
        Topic.objects.create(name="orders.created", team=payments, store=store)
        old = Topic.objects.create(name="orders.legacy", team=logistics, store=store,
                                   lifecycle=Topic.DEPRECATED, sunset="2027-01-01")
        client = client_for(personas["bob"])
        html = client.get(reverse("topics:topic_list"), {"lifecycle": "deprecated"}).content.decode()
        assert old.name in html and "orders.created" not in html
        html = client.get(reverse("topics:topic_list"), {"team": logistics.pk}).content.decode()
        assert old.name in html and "orders.created" not in html

    def test_list_sorts_and_paginates(self, payments, store, personas):
        Topic.objects.bulk_create(Topic(name=f"t.{i:03d}", team=payments, store=store) for i in range(60))
        client = client_for(personas["bob"])
        page = client.get(reverse("topics:topic_list"), {"sort": "-name", "per_page": 25}).content.decode()
        assert "60 results" in page and "t.059" in page and "t.000" not in page
        page3 = client.get(reverse("topics:topic_list"), {"sort": "-name", "per_page": 25, "page": 3})
        assert "t.000" in page3.content.decode()

    def test_deprecated_topic_needs_a_sunset_date(self, payments, store, personas):
        data = {**self.create_data(payments, store), "lifecycle": "deprecated"}
        response = client_for(personas["bob"]).post(reverse("topics:topic_add"), data)
        assert response.status_code == 400
        assert "needs a sunset date" in response.content.decode()

    def test_a_schema_that_is_not_a_json_schema_is_refused(self, payments, store, personas):
        data = {**self.create_data(payments, store), "data_schema": '{"type": "no-such-type"}'}
        response = client_for(personas["bob"]).post(reverse("topics:topic_add"), data)
        assert response.status_code == 400
        assert "Not a valid JSON Schema" in response.content.decode()

    def test_example_event_must_match_the_schema(self, payments, store, personas):
        data = {**self.create_data(payments, store),
                "data_schema": '{"type": "object", "required": ["id"]}',
                "example_event": '{"specversion": "1.0", "data": {"x": 1}}'}
        response = client_for(personas["bob"]).post(reverse("topics:topic_add"), data)
        assert response.status_code == 400
        assert "does not match the schema" in response.content.decode()

    def test_description_markdown_is_rendered_without_scripts(self, payments, store, personas):
        topic = Topic.objects.create(name="x.y", team=payments, store=store,
                                     description="**bold** <script>alert(1)</script> [a](javascript:alert(1))")
        html = client_for(personas["carol"]).get(topic.get_absolute_url()).content.decode()
        assert "<strong>bold</strong>" in html
        assert "<script>alert" not in html and "javascript:alert" not in html

    def test_tags_are_recorded_in_the_audit_snapshot(self, obj, personas):
        client_for(personas["bob"]).post(reverse("topics:topic_edit", args=[obj.pk]), self.update_data(obj))
        entry = AuditEntry.objects.filter(object_id=str(obj.pk), action="update").latest("pk")
        assert sorted(Tag.objects.filter(pk__in=entry.after["tags"]).values_list("name", flat=True)) == \
            ["billing", "eu"]
        assert entry.request_id is not None and entry.actor_name == "bob"


class TestTopicAPI(TopicData, ModelAPITests):
    def test_api_filters_with_the_same_filterset(self, payments, logistics, store, personas):
        Topic.objects.create(name="orders.created", team=payments, store=store)
        Topic.objects.create(name="parcels.sent", team=logistics, store=store)
        body = client_for(personas["carol"]).get(reverse("api:topic-list"), {"team": logistics.pk}).json()
        assert [t["name"] for t in body["results"]] == ["parcels.sent"]
        body = client_for(personas["carol"]).get(reverse("api:topic-list"), {"q": "orders"}).json()
        assert [t["name"] for t in body["results"]] == ["orders.created"]

    def test_api_validation_runs_the_model_rules(self, payments, store, personas):
        response = client_for(personas["bob"]).post(
            reverse("api:topic-list"),
            {"name": "Orders Created", "team": payments.pk, "store": store.pk, "lifecycle": "deprecated"},
            content_type="application/json")
        assert response.status_code == 400
        body = response.json()
        assert "must be dot-separated segments of letters, digits" in body["name"][0]
