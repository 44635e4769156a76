"""List pages and API lists run a constant number of SQL queries, whatever the page size."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from meshadmin.audit import audit_context
from tests.portal_support.personas import client_for
from topics.models import Tag, Topic

pytestmark = pytest.mark.django_db


def _queries(client, url, params) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, params)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def _seed_topics(team, store, n, start=0):
    tags = [Tag.objects.get_or_create(name=f"tag{i}")[0] for i in range(3)]
    for i in range(start, start + n):
        topic = Topic.objects.create(name=f"seed.t{i:04d}", team=team, store=store)
        topic.tags.set(tags[: i % 3 + 1])


@pytest.mark.parametrize("url, params", [
    (reverse("topics:topic_list"), {"per_page": 100}),
    (reverse("topics:topic_list"), {"per_page": 100, "q": "seed", "tag": "tag1"}),
    (reverse("api:topic-list"), {"limit": 100}),
    (reverse("meshadmin:auditentry_list"), {"per_page": 100}),
    (reverse("api:auditentry-list"), {"limit": 100}),
    (reverse("meshadmin:team_list"), {"per_page": 100}),
])
def test_list_queries_do_not_grow_with_the_rows(url, params, payments, store, personas):
    client = client_for(personas["bob"])
    with audit_context(user=personas["bob"]):
        _seed_topics(payments, store, 3)
        few = _queries(client, url, params)
        _seed_topics(payments, store, 30, start=3)
    many = _queries(client, url, params)
    assert few == many, f"{url}: {few} queries for 3 rows, {many} for 33"
