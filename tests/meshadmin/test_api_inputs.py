"""The API reads its input as its description states it (what schemathesis found it did not):
JSON types without coercion, counts that are counts, filters by id or slug, no NUL characters,
and JSON for a path that is no endpoint."""

from __future__ import annotations

import json

import pytest

from tests.portal_support.factories import make_topic
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db


def post(client, url, data):
    return client.post(url, json.dumps(data), content_type="application/json")


def test_a_number_where_a_string_is_documented_is_refused(personas):
    response = post(client_for(personas["bob"]), "/api/v1/teams/", {"name": "Ops", "slug": "ops", "description": 0})
    assert response.status_code == 400
    assert response.json() == {"description": ["A string is required."]}


def test_a_string_where_a_boolean_is_documented_is_refused(personas):
    response = post(client_for(personas["bob"]), "/api/v1/tokens/", {"read_only": "yes"})
    assert response.status_code == 400
    assert response.json() == {"read_only": ["true or false is required."]}


@pytest.mark.parametrize("query", ["offset=null", "limit=0", "limit=-1", "offset=1.5", "limit=100000"])
def test_pagination_refuses_what_is_not_a_count(personas, query):
    response = client_for(personas["bob"]).get(f"/api/v1/topics/?{query}")
    assert response.status_code == 400
    assert "A whole number of at least" in json.dumps(response.json())


def test_filters_take_a_team_by_id_or_slug_and_an_unknown_one_matches_nothing(payments, logistics, store, personas):
    make_topic(payments, store, "payments.one")
    make_topic(logistics, store, "logistics.one")
    client = client_for(personas["bob"])
    for value in (payments.pk, "payments"):
        names = [t["name"] for t in client.get("/api/v1/topics/", {"team": value}).json()["results"]]
        assert names == ["payments.one"], value
    for value in (99999, "no-such-team"):
        response = client.get("/api/v1/topics/", {"team": value})
        assert response.status_code == 200 and response.json()["count"] == 0
    assert client.get("/api/v1/topics/", {"store": "abc"}).status_code == 400  # not an id at all


@pytest.mark.parametrize("value", ["yes", "2", "-1"])
def test_a_boolean_filter_takes_true_or_false_only(personas, value):
    response = client_for(personas["bob"]).get("/api/v1/routing-rules/", {"enabled": value})
    assert response.status_code == 400
    assert response.json() == {"enabled": ["Use true or false."]}


def test_a_date_filter_out_of_the_databases_range_is_a_400(personas):
    response = client_for(personas["sam"]).get("/api/v1/audit/", {"time_after": "0001-01-01T00:00:00+10:00"})
    assert response.status_code == 400
    assert "out of range" in json.dumps(response.json())


def test_null_characters_are_refused_in_the_query_and_in_the_body(personas):
    client = client_for(personas["bob"])
    response = client.get("/api/v1/simulator/", {"application": "\x00x", "topic": "t", "action": "publish"})
    assert response.status_code == 400 and "Null characters" in response.json()["detail"]
    response = post(client, "/api/v1/routing-rules/", {"filters": [{"exact": {"type": "a\x00b"}}]})
    assert response.status_code == 400 and "Null characters" in response.json()["detail"]


def test_a_path_that_is_no_endpoint_answers_json(personas):
    response = client_for(personas["bob"]).get("/api/v1/topics/1.5/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found: no API endpoint at this path."}
