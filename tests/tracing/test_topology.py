"""``/api/v1/topology/`` and ``/topology/``: the structure from the database as each persona may
see it, the filters, bounded queries at 200 topics, and rates from a real Prometheus (Debian's),
one query per refresh whatever the number of viewers, matched to objects with hostile names."""

from __future__ import annotations

import json
import socket

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client import CollectorRegistry, Counter

from governance.models import AccessRule, Application, RoutingRule
from meshadmin.models import Team
from subscriptions.models import Subscription
from tests.portal_support.factories import make_rule
from tests.portal_support.live_portal import wait_for
from tests.portal_support.personas import client_for
from tests.portal_support.prometheus import serving_metrics
from topics.models import Topic

pytestmark = [pytest.mark.django_db]

API = "/api/v1/topology/"
LEDGER_HOST = "ledger.internal.example"


@pytest.fixture
def no_prometheus(settings):
    settings.PROMETHEUS_URL = ""
    settings.PROMETHEUS_UNAVAILABLE = ""


@pytest.fixture
def mesh(payments, logistics, store):
    """Payments: checkout publishes orders.* (not orders.failed: a deny rule), a route copies
    orders.* to audit.orders, and ledger (Payments' own) subscribes to audit.orders: a
    subscription only Payments and staff see. Logistics: shipper publishes shipping.* (a team
    rule) and subscribes to orders.created; checkout subscribes to shipping.requested (paused).
    Everyone may publish to inventory.*, which draws nothing until traffic flows."""
    topics = {name: Topic.objects.create(name=name, team=team, store=store) for name, team in (
        ("orders.created", payments), ("orders.failed", payments), ("audit.orders", payments),
        ("shipping.requested", logistics), ("inventory.counted", logistics))}
    apps = {name: Application.objects.create(name=name, team=team) for name, team in (
        ("checkout", payments), ("ledger", payments), ("shipper", logistics))}
    make_rule(payments, "orders.*", application=apps["checkout"], publish=True)
    make_rule(payments, "orders.failed", application=apps["checkout"], publish=True, effect=AccessRule.DENY)
    make_rule(logistics, "shipping.*", principal_team=logistics, publish=True)
    make_rule(logistics, "inventory.*", everyone=True, publish=True)
    route = RoutingRule.objects.create(team=payments, source_pattern="orders.*")
    route.targets.set([topics["audit.orders"]])
    subscriptions = {
        "shipper": Subscription.objects.create(application=apps["shipper"], topic=topics["orders.created"],
                                               state=Subscription.ACTIVE, webhook_url="https://hooks.shipper.example/in"),
        "checkout": Subscription.objects.create(application=apps["checkout"], topic=topics["shipping.requested"],
                                                state=Subscription.PAUSED, webhook_url="https://checkout.example:8443/h"),
        "ledger": Subscription.objects.create(application=apps["ledger"], topic=topics["audit.orders"],
                                              state=Subscription.ACTIVE, webhook_url=f"https://{LEDGER_HOST}/h"),
        # not live: never drawn
        "asked": Subscription.objects.create(application=apps["ledger"], topic=topics["orders.created"],
                                             webhook_url="https://asked.example/h"),
    }
    return {"topics": topics, "apps": apps, "route": route, "subscriptions": subscriptions}


def get(user, **params):
    response = client_for(user).get(API, params)
    assert response.status_code == 200, response.content
    return response.json()


def ids(body, kind=None, key="nodes"):
    return {item["id"] for item in body[key] if kind is None or item["kind"] == kind}


def test_the_graph_joins_publishers_topics_subscriptions_hosts_and_routes(mesh, personas, no_prometheus):
    body = get(personas["bob"])
    t, a, s, route = mesh["topics"], mesh["apps"], mesh["subscriptions"], mesh["route"]
    assert ids(body, "topic") == {f"topic:{topic.pk}" for topic in t.values()}
    assert ids(body, "domain") == {"domain:orders", "domain:audit", "domain:shipping", "domain:inventory"}
    publish = ids(body, "publish", "edges")
    assert publish == {f"publish:{a['checkout'].pk}:{t['orders.created'].pk}",  # not orders.failed: denied
                       f"publish:{a['shipper'].pk}:{t['shipping.requested'].pk}"}  # through the team's rule
    assert ids(body, "route", "edges") == {f"route:{route.pk}:{t[name].pk}:{t['audit.orders'].pk}"
                                           for name in ("orders.created", "orders.failed")}
    assert ids(body, "deliver", "edges") == {f"deliver:{s[name].pk}" for name in ("shipper", "checkout", "ledger")}
    assert ids(body, "host") == {"host:hooks.shipper.example", "host:checkout.example:8443", f"host:{LEDGER_HOST}"}
    edges = {edge["id"]: edge for edge in body["edges"]}
    assert edges[f"deliver:{s['checkout'].pk}"]["state"] == "paused"
    assert edges[f"webhook:{s['ledger'].pk}"]["target"] == f"host:{LEDGER_HOST}"
    nodes = {node["id"]: node for node in body["nodes"]}
    assert nodes[f"topic:{t['orders.created'].pk}"] | {"url": None} == {
        "id": f"topic:{t['orders.created'].pk}", "kind": "topic", "label": "orders.created", "domain": "orders",
        "short": "created", "team": "payments", "lifecycle": "active", "context": False, "url": None}
    assert nodes[f"subscription:{s['shipper'].pk}"]["url"] == f"/subscriptions/{s['shipper'].pk}/"
    assert edges[f"publish:{a['checkout'].pk}:{t['orders.created'].pk}"]["url"] == \
        f"/topics/{t['orders.created'].pk}/traffic/"
    assert nodes["domain:orders"]["topics"] == 2
    # without Prometheus: the whole structure, no rates, and why
    assert body["rates_available"] is False
    assert "No Prometheus is configured" in body["rates_reason"] and "PROMETHEUS_URL" in body["rates_hint"]
    assert {(edge["rate"], edge["errors"], edge["health"]) for edge in body["edges"]} == {(None, None, "unknown")}


@pytest.mark.parametrize("persona", ["alice", "bob", "dave", "carol", "sam", "olga"])
def test_each_persona_sees_the_subscriptions_their_pages_show_and_no_other(mesh, personas, olga, persona,
                                                                           no_prometheus):
    user = {**personas, "olga": olga}[persona]
    response = client_for(user).get(API)
    body = response.json()
    visible = Subscription.objects.restrict(user).filter(state__in=Subscription.LIVE_STATES)
    assert ids(body, "subscription") == {f"subscription:{pk}" for pk in visible.values_list("pk", flat=True)}
    ledger = mesh["subscriptions"]["ledger"]
    sees_ledger = persona in ("alice", "bob", "dave", "sam")
    assert (f"subscription:{ledger.pk}" in ids(body)) is sees_ledger
    assert (LEDGER_HOST in response.content.decode()) is sees_ledger
    assert ids(body, "topic") == {f"topic:{topic.pk}" for topic in mesh["topics"].values()}  # the catalog


def test_anonymous_visitors_get_401_and_the_page_sends_them_to_sign_in(client, mesh):
    assert client.get(API).status_code == 401
    response = client.get("/topology/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_filters_narrow_to_topics_and_what_joins_them(mesh, personas, no_prometheus):
    s = mesh["subscriptions"]
    sam = personas["sam"]
    body = get(sam, prefix="orders.")
    topics = {node["label"]: node for node in body["nodes"] if node["kind"] == "topic"}
    assert set(topics) == {"orders.created", "orders.failed", "audit.orders"}
    assert topics["audit.orders"]["context"] is True and topics["orders.created"]["context"] is False
    assert ids(body, "subscription") == {f"subscription:{s['shipper'].pk}"}  # ledger's topic is context only
    assert body["filters"] == {"team": None, "prefix": "orders.", "application": None}

    body = get(sam, team="logistics")  # its topics, and those its applications publish or subscribe to
    assert {n["label"] for n in body["nodes"] if n["kind"] == "topic" and not n["context"]} == {
        "shipping.requested", "inventory.counted", "orders.created"}
    assert get(sam, team=str(Team.objects.get(slug="logistics").pk))["nodes"] == body["nodes"]

    body = get(sam, application="checkout")
    assert {n["label"] for n in body["nodes"] if n["kind"] == "topic" and not n["context"]} == {
        "orders.created", "shipping.requested"}
    body = get(sam, application="checkout", team="logistics", prefix="shipping")  # all three: the intersection
    assert {n["label"] for n in body["nodes"] if n["kind"] == "topic"} == {"shipping.requested"}

    assert get(sam, team="", prefix="", application="")["nodes"] == get(sam)["nodes"]  # the page's form, empty
    for params in ({"team": "nobody"}, {"application": "nobody"}, {"application": "99999"}, {"prefix": "zzz"}):
        body = get(sam, **params)
        assert body["nodes"] == [] and body["edges"] == [], params


@pytest.mark.parametrize(("params", "field"), [
    ({"team": "<script>"}, "team"), ({"prefix": 'a"}or{x="'}, "prefix"), ({"application": "a b"}, "application"),
    ({"prefix": "x" * 250}, "prefix"), ({"team": "t" * 101}, "team"),
])
def test_a_filter_that_is_not_a_name_is_a_400_naming_it(mesh, personas, params, field, no_prometheus):
    response = client_for(personas["bob"]).get(API, params)
    assert response.status_code == 400
    assert set(response.json()) == {field}


def test_the_page_is_in_the_navigation_and_loads_its_script_and_data(mesh, personas, no_prometheus):
    client = client_for(personas["carol"])
    home = client.get("/").content.decode()
    assert 'href="/topology/"' in home
    page = client.get("/topology/?team=logistics").content.decode()
    assert "vendor/cytoscape-3.35.0/cytoscape.min.js" in page and "tracing/topology.js" in page
    assert 'id="__________cytoscape_stylesheet"' in page  # or Cytoscape.js would inject a <style>
    assert '<option value="logistics" selected>' in page
    config = json.loads(page.split('<script id="topology-config" type="application/json">')[1].split("</script>")[0])
    assert config["api"] == API
    assert 'data-testid="topology-rates-missing"' in page and "No Prometheus is configured" in page


def _grow_mesh(payments, logistics, store, first: int, last: int) -> None:
    """Topics ``first`` to ``last`` (excluded) in domains of ten, an application per domain that
    publishes to it, a subscription on every fifth topic, a route per domain."""
    names = [f"domain{n // 10:02d}.event{n % 10}" for n in range(first, last)]
    created = Topic.objects.bulk_create([Topic(name=name, team=payments if n % 2 else logistics, store=store)
                                         for n, name in enumerate(names)])
    domains = sorted({name.split(".")[0] for name in names})
    apps = Application.objects.bulk_create([Application(name=f"app-{d}", team=payments) for d in domains])
    AccessRule.objects.bulk_create([AccessRule(team=payments, principal_kind=AccessRule.APPLICATION,
                                               principal_application=app, topic_pattern=f"{d}.*", publish=True)
                                    for app, d in zip(apps, domains, strict=True)])
    Subscription.objects.bulk_create([Subscription(application=apps[n % len(apps)], topic=topic,
                                                   state=Subscription.ACTIVE,
                                                   webhook_url=f"https://hooks{n % 7}.example/h")
                                      for n, topic in enumerate(created) if n % 5 == 0])
    for domain in domains:
        rule = RoutingRule.objects.create(team=payments, source_pattern=f"{domain}.*")
        rule.targets.set([created[-1]])


def _queries(user) -> tuple[int, dict]:
    client = client_for(user)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(API)
    assert response.status_code == 200
    return len(captured), response.json()


@pytest.mark.parametrize("persona", ["bob", "sam"])
def test_two_hundred_topics_cost_no_more_queries_than_ten(payments, logistics, store, personas, persona,
                                                          django_assert_max_num_queries, no_prometheus):
    user = personas[persona]
    _grow_mesh(payments, logistics, store, 0, 10)
    small, body = _queries(user)
    assert len(ids(body, "topic")) == 10
    _grow_mesh(payments, logistics, store, 10, 200)
    client = client_for(user)
    with django_assert_max_num_queries(small):
        response = client.get(API)
    body = response.json()
    assert len(ids(body, "topic")) == 200 and len(ids(body, "domain")) == 20
    assert len(ids(body, "publish", "edges")) == 200 and len(ids(body, "deliver", "edges")) == 40


# -- rates from a real Prometheus ------------------------------------------------------------------------

def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_an_unreachable_prometheus_leaves_the_structure_and_says_why(mesh, personas, settings, mesh_prefix):
    settings.PROMETHEUS_URL = _closed_port()
    body = get(personas["bob"])
    assert body["rates_available"] is False
    assert body["rates_reason"] == "Prometheus is unreachable (no connection)."
    assert "PROMETHEUS_URL" in body["rates_hint"]
    assert body["rates_failing_since"] is not None
    assert len(ids(body, "publish", "edges")) == 2 and len(ids(body, "deliver", "edges")) == 3
    assert {edge["health"] for edge in body["edges"]} == {"unknown"}


class Exporter:
    """A runtime's series as a scrape sees them, each counter growing by a fixed step per scrape,
    so that the rates Prometheus computes stand in the ratio of the steps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.published = Counter("meshruntime_events_published", "test", ["topic", "application"],
                                 registry=self.registry)
        self.refusals = Counter("meshruntime_publish_refusals", "test", ["reason", "topic", "application"],
                                registry=self.registry)
        self.deliveries = Counter("meshruntime_deliveries", "test", ["subscription", "outcome"],
                                  registry=self.registry)
        self.steps: list[tuple[Counter, float]] = []
        self.target = ""  # host:port, once served (the fixture)

    def scraped(self) -> None:
        for child, step in self.steps:
            child.inc(step)


@pytest.fixture
def exporter():
    found = Exporter()
    with serving_metrics(found.registry, found.scraped) as found.target:
        yield found


def test_edges_carry_their_own_series_rates_from_one_shared_query_whatever_the_names(
        payments, logistics, store, personas, olga, settings, mesh_prefix, exporter, start_prometheus):
    """Names reach the edges from the database, and here they are hostile (bulk_create runs no
    validator): each edge gets exactly its own series' rate. They never reach PromQL: the one
    query of a refresh names no object, and serves every viewer."""
    from .test_promql import HOSTILE

    names = [*HOSTILE, "a", "b"]
    Topic.objects.bulk_create([Topic(name=name, team=payments, store=store) for name in names])
    Application.objects.bulk_create([Application(name=name, team=payments) for name in names])
    topics = dict(Topic.objects.values_list("name", "pk"))
    apps = dict(Application.objects.values_list("name", "pk"))
    for n, name in enumerate(names):  # application <name> publishes to topic <name>, (n + 1) per scrape
        exporter.steps.append((exporter.published.labels(name, name), n + 1))
    exporter.steps.append((exporter.refusals.labels("forbidden", HOSTILE[0], HOSTILE[0]), 3))
    exporter.steps.append((exporter.refusals.labels("forbidden", "b", "a"), 1))  # a refused on b: an edge of its own
    private = Subscription.objects.create(application_id=apps["a"], topic_id=topics["a"], state=Subscription.ACTIVE,
                                          webhook_url="https://a.example/h")
    exporter.steps.append((exporter.deliveries.labels(f"sub-{private.pk}", "delivered"), 9))
    exporter.steps.append((exporter.deliveries.labels(f"sub-{private.pk}", "dead_lettered"), 1))
    prometheus = start_prometheus(f"""
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: runtime
    static_configs: [{{targets: ["{exporter.target}"]}}]
""")
    wait_for(lambda: prometheus.query("count_over_time(meshruntime_deliveries_total[1m]) >= 3"), 30,
             "three scrapes", interval=0.2)
    settings.PROMETHEUS_URL = prometheus.url
    settings.PROMETHEUS_SCRAPE_INTERVAL = 60  # a refresh of a minute: the viewers below fall in one

    before = prometheus.queries_answered()
    viewers = [personas["bob"], personas["carol"], personas["sam"], olga] * 3
    bodies = [get(user) for user in viewers]
    assert prometheus.queries_answered() - before == 1  # twelve viewers, one query
    body = bodies[0]
    assert body["rates_available"] is True and body["rates_reason"] is None and body["rates_at"]
    edges = {edge["id"]: edge for edge in body["edges"]}
    unit = edges[f"publish:{apps[names[0]]}:{topics[names[0]]}"]["rate"]
    assert unit > 0
    for n, name in enumerate(names):
        edge = edges[f"publish:{apps[name]}:{topics[name]}"]
        assert edge["declared"] is False  # no rule: drawn because Prometheus saw it
        assert edge["rate"] == pytest.approx((n + 1) * unit), name
    hostile = edges[f"publish:{apps[HOSTILE[0]]}:{topics[HOSTILE[0]]}"]
    assert hostile["errors"] == pytest.approx(3 * unit) and hostile["detail"] == {"forbidden": hostile["errors"]}
    assert hostile["health"] == "failing"  # 3 refused for 1 stored
    refused_only = edges[f"publish:{apps['a']}:{topics['b']}"]
    assert refused_only["rate"] == 0 and refused_only["health"] == "failing"
    assert edges[f"publish:{apps['b']}:{topics['b']}"]["health"] == "ok"
    delivered = edges[f"deliver:{private.pk}"]
    assert delivered["rate"] == pytest.approx(9 * unit) and delivered["errors"] == pytest.approx(unit)
    assert delivered["health"] == "degraded"  # 1 in 10 failed
    # the subscription's rates only for those who see it (Payments' and staff)
    by_user = {user.username: found for user, found in zip(viewers, bodies, strict=True)}
    assert f"deliver:{private.pk}" in ids(by_user["sam"], key="edges")
    assert f"deliver:{private.pk}" not in ids(by_user["carol"], key="edges")
    assert f"deliver:{private.pk}" not in ids(by_user["olga"], key="edges")
    assert f"sub-{private.pk}" not in json.dumps(by_user["olga"])
