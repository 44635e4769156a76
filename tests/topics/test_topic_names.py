"""Apache EventMesh's topic names in the catalog: the portal takes what the runtime takes
(``meshruntime.policy.validate_topic_name`` on both sides), and refuses a second topic whose name
differs from another only in case."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.models import AccessRule
from meshruntime.config import seal, validate_document
from meshruntime.state import MeshState
from rollout.compiler import compile_mesh_config
from tests.portal_support.factories import make_app, make_topic
from tests.portal_support.personas import client_for
from topics.models import Topic

pytestmark = pytest.mark.django_db


def topic_data(team, store, name: str) -> dict:
    return {"name": name, "team": team.pk, "store": store.pk, "lifecycle": "active"}


@pytest.mark.parametrize("name", ["TEST-TOPIC-HTTP-ASYNC", "EventMesh.SyncRequestInstance", "TEST_TOPIC_GRPC_ASYNC"])
def test_a_member_creates_an_eventmesh_topic_on_the_page(payments, store, personas, name):
    response = client_for(personas["bob"]).post(reverse("topics:topic_add"), topic_data(payments, store, name))
    assert response.status_code == 302, response.content.decode()
    assert Topic.objects.get().name == name


def test_staff_create_one_through_the_api(payments, store, personas):
    response = client_for(personas["sam"]).post(reverse("api:topic-list"),
                                                topic_data(payments, store, "TEST-TOPIC-HTTP-ASYNC"),
                                                content_type="application/json")
    assert response.status_code == 201, response.content.decode()
    assert response.json()["name"] == "TEST-TOPIC-HTTP-ASYNC"


def test_a_name_differing_only_in_case_is_refused_on_the_page_and_in_the_api(payments, store, personas):
    make_topic(payments, store, "TEST-TOPIC-HTTP-ASYNC")
    page = client_for(personas["bob"]).post(reverse("topics:topic_add"),
                                            topic_data(payments, store, "test-topic-http-async"))
    assert page.status_code == 400
    assert "differs only in case from the topic TEST-TOPIC-HTTP-ASYNC" in page.content.decode()
    api = client_for(personas["sam"]).post(reverse("api:topic-list"),
                                           topic_data(payments, store, "Test-Topic-Http-Async"),
                                           content_type="application/json")
    assert api.status_code == 400
    assert "differs only in case from the topic TEST-TOPIC-HTTP-ASYNC" in str(api.json())
    assert list(Topic.objects.values_list("name", flat=True)) == ["TEST-TOPIC-HTTP-ASYNC"]


def test_what_no_store_or_url_takes_is_still_refused_naming_the_rule(payments, store, personas):
    response = client_for(personas["bob"]).post(reverse("topics:topic_add"),
                                                topic_data(payments, store, "TEST TOPIC"))
    assert response.status_code == 400
    assert "must be dot-separated segments of letters, digits, &#x27;-&#x27; and &#x27;_&#x27;" in \
        response.content.decode()


def test_rules_name_eventmesh_topics_and_the_compiled_document_is_one_the_runtime_applies(payments, store,
                                                                                          personas):
    make_topic(payments, store, "EventMesh.SyncRequestInstance")
    make_topic(payments, store, "TEST-TOPIC-HTTP-ASYNC")
    app = make_app(payments, "eventmesh-demo")
    for pattern in ("EventMesh.*", "TEST-TOPIC-HTTP-ASYNC"):
        response = client_for(personas["bob"]).post(reverse("governance:accessrule_add"), {
            "team": payments.pk, "principal_kind": "application", "principal_application": app.pk,
            "topic_pattern": pattern, "publish": "on", "effect": "allow"})
        assert response.status_code == 302, response.content.decode()
    assert sorted(AccessRule.objects.values_list("topic_pattern", flat=True)) == \
        ["EventMesh.*", "TEST-TOPIC-HTTP-ASYNC"]
    doc = validate_document(seal(compile_mesh_config(), 1))
    assert {t["name"] for t in doc["topics"]} == {"EventMesh.SyncRequestInstance", "TEST-TOPIC-HTTP-ASYNC"}
    state = MeshState.build(doc)
    assert state.may_publish("eventmesh-demo", "EventMesh.SyncRequestInstance")
    assert state.may_publish("eventmesh-demo", "TEST-TOPIC-HTTP-ASYNC")
    assert not state.may_publish("eventmesh-demo", "test-topic-http-async")
