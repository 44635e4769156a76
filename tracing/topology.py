"""The live topology: applications → topics → subscriptions → their webhooks' hosts, routing rules as
topic → topic edges, and each edge's live rate (docs/topology.md).

**Structure** comes from the database, as the user may see it: topics, applications and routing
rules are the catalog (everyone signed in sees them); subscriptions, and so their webhooks' hosts,
only as ``SubscriptionQuerySet.restrict`` allows. An application → topic edge is drawn where the
access policy lets an application named by a rule (or a team's rule) publish to the topic, and
where Prometheus saw it publish or be refused there; a rule for everyone draws no edge until
traffic flows (it would join every application to every topic). A bounded number of database
queries, whatever the number of topics.

**Rates** come from Prometheus in one query for the whole mesh per refresh (:func:`rates_query`),
whatever the number of edges, filters or viewers: it names no object, so no name a user chose
enters PromQL (the answer's labels are matched to the objects here), and every viewer shares it
through :func:`tracing.pollers.shared_answer`. Without Prometheus, or with one that fails, the
structure is drawn all the same and ``rates_available`` is false with the reason.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis
from asgiref.sync import async_to_sync
from django.db.models import Q
from django.urls import reverse

from governance.models import Application
from governance.rules import TopicOwners, compiled_access_rules, compiled_routing_rules
from meshadmin.models import Team
from meshruntime.policy import Policy
from subscriptions.models import Subscription
from topics.models import Topic

from . import pollers, prometheus
from .charts import DELIVERIES, PUBLISHED, RANGES, REFUSALS, RETRIES, ROUTED, TOP_CHART, Query
from .promql import labelled, rate, selector, sum_by, union

__all__ = ["DEGRADED", "FAILING", "RATES_RANGE", "Filters", "health", "rates_query", "topology"]

log = logging.getLogger(__name__)

#: The chart range whose refresh and rate window the topology uses (the live one).
RATES_RANGE = "15m"
#: An edge is degraded above this share of errors or refusals, failing at or above the second
#: (Kiali's defaults: 0.1 % and 20 %).
DEGRADED, FAILING = 0.001, 0.2
APPLICATION, TOPIC, DOMAIN, SUBSCRIPTION, HOST = "application", "topic", "domain", "subscription", "host"


def node_id(kind: str, key: object) -> str:
    """A node's id in the graph: ``<kind>:<key>`` (``topic:12``, ``host:billing.internal``)."""
    return f"{kind}:{key}"
PUBLISH, ROUTE, DELIVER, WEBHOOK = "publish", "route", "deliver", "webhook"


def rates_query() -> Query:
    """The one query behind every edge's rate: each part told apart by its ``series`` label."""
    _step, _refresh, window = RANGES[RATES_RANGE].scaled()

    def summed(metric: str, labels: list[str]) -> str:
        return sum_by(rate(selector(metric), window), labels)

    promql = union([
        labelled(summed(PUBLISHED, ["application", "topic"]), "series", "published"),
        labelled(summed(REFUSALS, ["application", "topic", "reason"]), "series", "refused"),
        labelled(summed(ROUTED, ["rule", "topic"]), "series", "routed"),
        labelled(summed(DELIVERIES, ["subscription", "outcome"]), "series", "delivery"),
        labelled(summed(RETRIES, ["subscription"]), "series", "retried"),
    ])
    return Query(TOP_CHART, promql, RATES_RANGE)


def health(rate_: float | None, errors: float | None) -> str:
    """``unknown`` (no rates), ``idle``, ``ok``, ``degraded`` or ``failing``, from the share of errors."""
    if rate_ is None or errors is None:
        return "unknown"
    total = rate_ + errors
    if total <= 0:
        return "idle"
    share = errors / total
    if share >= FAILING:
        return "failing"
    if share > DEGRADED:
        return "degraded"
    return "ok"


@dataclass(frozen=True)
class Filters:
    """What the viewer narrowed the graph to (each empty: no narrowing). ``team`` is a team's id or
    slug, ``application`` an application's id or name: one that names nothing gives an empty graph,
    as a list filtered by it would."""

    team: str = ""
    prefix: str = ""
    application: str = ""

    def as_json(self) -> dict[str, str | None]:
        return {"team": self.team or None, "prefix": self.prefix or None, "application": self.application or None}


@dataclass
class Rates:
    """An answer of :func:`rates_query`, indexed by what the edges are keyed on."""

    published: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    refused: dict[tuple[str, str], dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    routed: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    deliveries: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def parse(cls, series: Iterable[dict[str, Any]]) -> Rates:
        rates = cls()
        for row in series:
            labels, points = row.get("labels") or {}, row.get("points") or []
            value = (points[-1][1] if points else None) or 0.0
            part = labels.get("series")
            if part == "published":
                rates.published[labels.get("application", ""), labels.get("topic", "")] += value
            elif part == "refused":
                reasons = rates.refused[labels.get("application", ""), labels.get("topic", "")]
                reason = labels.get("reason", "") or "unknown"
                reasons[reason] = reasons.get(reason, 0.0) + value
            elif part == "routed":
                rates.routed[labels.get("rule", ""), labels.get("topic", "")] += value
            elif part == "delivery":
                outcomes = rates.deliveries[labels.get("subscription", "")]
                outcome = labels.get("outcome", "") or "unknown"
                outcomes[outcome] = outcomes.get(outcome, 0.0) + value
            elif part == "retried":
                outcomes = rates.deliveries[labels.get("subscription", "")]
                outcomes["retried"] = outcomes.get("retried", 0.0) + value
        return rates

    def observed_publishers(self) -> set[tuple[str, str]]:
        """(application, topic) pairs a runtime counted a publish or a refusal of (names not checked
        yet): at a rate of 0 too, so that an edge refused now and then stays drawn between refusals."""
        return {(app, topic) for app, topic in (*self.published, *self.refused) if app and topic}


def fetch_rates() -> tuple[Rates | None, dict[str, Any]]:
    """The rates and what to tell about them: ``(None, status)`` when there are none to show."""
    reason = prometheus.unavailable_reason()
    if reason is not None:
        return None, _status(False, reason.message, reason.hint)
    query = rates_query()
    try:
        answer = async_to_sync(pollers.shared_answer)(query)
    except (redis.RedisError, OSError) as error:
        log.warning("topology rates: Redis failed: %s", error)
        return None, _status(False, f"The portal could not reach Redis to share Prometheus's answer: {error}",
                             "Check that Redis runs and that REDIS_URL is right.")
    refresh = RANGES[RATES_RANGE].scaled()[1]
    if answer.get("error"):
        return None, _status(False, answer["error"], answer.get("hint") or "", since=answer.get("error_since"),
                             refresh=refresh)
    return Rates.parse(answer.get("series") or []), _status(True, at=answer.get("fetched_at"), refresh=refresh)


def _status(available: bool, reason: str = "", hint: str = "", *, at: float | None = None,
            since: float | None = None, refresh: int | None = None) -> dict[str, Any]:
    _step, default_refresh, window = RANGES[RATES_RANGE].scaled()
    return {"rates_available": available, "rates_reason": reason or None, "rates_hint": hint or None,
            "rates_at": at, "rates_failing_since": since, "rates_window": window,
            "refresh_seconds": refresh or default_refresh}


# -- structure --------------------------------------------------------------------------------------------


def _domain(name: str) -> str:
    return name.split(".", 1)[0]


def _host(webhook_url: str) -> str:
    try:
        parts = urlsplit(webhook_url)
        return parts.netloc.rpartition("@")[2] or webhook_url
    except ValueError:
        return webhook_url


@dataclass
class _Mesh:
    """What the user may see, as plain rows (the few queries of :func:`_load`)."""

    topics: dict[int, tuple[str, int, str, str]]  # pk -> (name, team id, team slug, lifecycle)
    apps: dict[int, tuple[str, int, str]]  # pk -> (name, team id, team slug)
    publishers: set[tuple[int, int]]  # (application pk, topic pk) the policy lets publish
    routes: list[tuple[int, int, int]]  # (rule pk, source topic pk, target topic pk)
    route_targets: dict[int, int]  # rule pk -> number of its targets
    subscriptions: list[tuple[int, int, int, str, str, str, str]]  # pk, app, topic, state, url, mqtt store, topic


def _load(user) -> _Mesh:
    topic_rows = list(Topic.objects.restrict(user).values_list("pk", "name", "team_id", "team__slug", "lifecycle"))
    topics = {pk: (name, team, slug, lifecycle) for pk, name, team, slug, lifecycle in topic_rows}
    topic_pk = {name: pk for pk, (name, *_rest) in topics.items()}
    owners = TopicOwners((name, team) for name, team, *_rest in topics.values())
    apps = {pk: (name, team, slug) for pk, name, team, slug in Application.objects.restrict(user).values_list(
        "pk", "name", "team_id", "team__slug")}
    app_pk = {name: pk for pk, (name, *_rest) in apps.items()}

    # application -> topic: candidates from the rules that name applications, kept where the
    # policy (deny beats allow, the runtimes' own rule) lets them publish
    rules = compiled_access_rules()
    candidates: set[tuple[str, str]] = set()
    for rule in rules:
        if "publish" not in rule["actions"] or rule["effect"] != "allow" or rule["principals"] == "*":
            continue
        covered = [name for name, _team in owners.covered(rule["topic"])]
        candidates.update((app, name) for app in rule["principals"] if app in app_pk for name in covered)
    policy = Policy.from_rules(rules, cache_size=0)
    publishers = {(app_pk[app], topic_pk[name]) for app, name in candidates if policy.decide(app, name, "publish")}

    routes, route_targets = [], {}
    for rule in compiled_routing_rules():
        pk = int(rule["id"].removeprefix("route-"))
        route_targets[pk] = len(rule["targets"])
        targets = [topic_pk[name] for name in rule["targets"] if name in topic_pk]
        for source, _team in owners.covered(rule["source"]):
            routes.extend((pk, topic_pk[source], target) for target in targets if target != topic_pk[source])

    subscriptions = list(
        Subscription.objects.restrict(user).filter(state__in=Subscription.LIVE_STATES)
        .values_list("pk", "application_id", "topic_id", "state", "webhook_url", "mqtt_store__name", "mqtt_topic")
        .order_by("pk"))
    return _Mesh(topics, apps, publishers, routes, route_targets, subscriptions)


def _selected(mesh: _Mesh, filters: Filters, observed: set[tuple[int, int]]) -> set[int]:
    """The topics the filters pick (before their neighbours are added)."""
    selected = set(mesh.topics)
    if filters.prefix:
        selected = {pk for pk in selected if mesh.topics[pk][0].startswith(filters.prefix)}
    publishing = mesh.publishers | observed
    if filters.team:
        team = _team_id(filters.team)
        team_apps = {pk for pk, (_name, team_id, _slug) in mesh.apps.items() if team_id == team}
        touched = {topic for app, topic in publishing if app in team_apps}
        touched |= {topic for _pk, app, topic, *_rest in mesh.subscriptions if app in team_apps}
        selected = {pk for pk in selected if mesh.topics[pk][1] == team or pk in touched}
    if filters.application:
        app = _application_id(filters.application, mesh)
        touched = {topic for publisher, topic in publishing if publisher == app}
        touched |= {topic for _pk, subscriber, topic, *_rest in mesh.subscriptions if subscriber == app}
        selected &= touched
    return selected


def _team_id(value: str) -> int | None:
    match = Q(slug=value) | Q(pk=int(value)) if value.isdigit() else Q(slug=value)
    return Team.objects.filter(match).values_list("pk", flat=True).first()


def _application_id(value: str, mesh: _Mesh) -> int | None:
    for pk, (name, *_rest) in mesh.apps.items():
        if name == value or (value.isdigit() and pk == int(value)):
            return pk
    return None


def _edge_rates(edge: dict[str, Any], rate_: float | None, errors: float | None, detail: dict[str, float]) -> None:
    total = None if rate_ is None or errors is None else rate_ + errors
    edge.update(rate=rate_, errors=errors, detail=detail, error_ratio=errors / total if total else None,
                health=health(rate_, errors))


def topology(user, filters: Filters | None = None) -> dict[str, Any]:
    """The graph ``user`` may see, narrowed by ``filters``, with each edge's rate when Prometheus has them."""
    filters = filters or Filters()
    rates, status = fetch_rates()
    mesh = _load(user)
    topic_pk = {name: pk for pk, (name, *_rest) in mesh.topics.items()}
    app_pk = {name: pk for pk, (name, *_rest) in mesh.apps.items()}
    observed = set()
    if rates is not None:
        observed = {(app_pk[app], topic_pk[topic]) for app, topic in rates.observed_publishers()
                    if app in app_pk and topic in topic_pk}
    selected = _selected(mesh, filters, observed)

    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[str, dict[str, Any]] = {}

    def topic_node(pk: int, context: bool = False) -> str:
        nid = node_id(TOPIC, pk)
        if nid not in nodes:
            name, _team, slug, lifecycle = mesh.topics[pk]
            domain = _domain(name)
            nodes[nid] = {"id": nid, "kind": TOPIC, "label": name, "domain": domain,
                              "short": name[len(domain) + 1:] or name, "team": slug, "lifecycle": lifecycle,
                              "context": context, "url": reverse("topics:topic", args=[pk])}
        elif not context:
            nodes[nid]["context"] = False
        return nid

    for pk in sorted(selected, key=lambda pk: mesh.topics[pk][0]):
        topic_node(pk)

    for app, topic in sorted(mesh.publishers | observed):
        if topic not in selected:
            continue
        app_id = node_id(APPLICATION, app)
        name, _team, slug = mesh.apps[app]
        nodes.setdefault(app_id, {"id": app_id, "kind": APPLICATION, "label": name, "team": slug,
                                  "url": reverse("governance:application", args=[app])})
        edge = {"id": f"publish:{app}:{topic}", "kind": PUBLISH, "source": app_id, "target": node_id(TOPIC, topic),
                "declared": (app, topic) in mesh.publishers, "url": reverse("tracing:topic_traffic", args=[topic])}
        if rates is not None:
            key = (name, mesh.topics[topic][0])
            reasons = rates.refused.get(key, {})
            _edge_rates(edge, rates.published.get(key, 0.0), sum(reasons.values()), reasons)
        else:
            _edge_rates(edge, None, None, {})
        edges[edge["id"]] = edge

    for rule, source, target in mesh.routes:
        if source not in selected and target not in selected:
            continue
        edge = {"id": f"route:{rule}:{source}:{target}", "kind": ROUTE, "source": topic_node(source, context=True),
                "target": topic_node(target, context=True), "declared": True,
                "label": f"route-{rule}", "url": reverse("governance:routingrule", args=[rule])}
        if rates is not None:
            copies = rates.routed.get((f"route-{rule}", mesh.topics[source][0]), 0.0)
            _edge_rates(edge, copies / max(1, mesh.route_targets.get(rule, 1)), 0.0, {})
        else:
            _edge_rates(edge, None, None, {})
        edges[edge["id"]] = edge

    for pk, app, topic, state, webhook_url, mqtt_store, mqtt_topic in mesh.subscriptions:
        if topic not in selected:
            continue
        sub_id = node_id(SUBSCRIPTION, pk)
        app_name = mesh.apps[app][0] if app in mesh.apps else f"application {app}"
        nodes[sub_id] = {"id": sub_id, "kind": SUBSCRIPTION, "label": app_name, "name": f"sub-{pk}",
                         "state": state, "url": reverse("subscriptions:subscription", args=[pk])}
        if mqtt_store:
            host_id, host_label = node_id(HOST, f"mqtt:{mqtt_store}"), f"MQTT {mqtt_store}"
        else:
            host = _host(webhook_url)
            host_id, host_label = node_id(HOST, host), host
        nodes.setdefault(host_id, {"id": host_id, "kind": HOST, "label": host_label, "url": None})
        metrics_url = reverse("tracing:subscription_metrics", args=[pk])
        deliver = {"id": f"deliver:{pk}", "kind": DELIVER, "source": topic_node(topic), "target": sub_id,
                   "declared": True, "state": state, "url": metrics_url}
        webhook = {"id": f"webhook:{pk}", "kind": WEBHOOK, "source": sub_id, "target": host_id, "declared": True,
                   "state": state, "label": mqtt_topic if mqtt_store else "", "url": metrics_url}
        for edge in (deliver, webhook):
            if rates is not None:
                outcomes = rates.deliveries.get(f"sub-{pk}", {})
                done = outcomes.get("delivered", 0.0) + outcomes.get("filtered", 0.0)
                failed = outcomes.get("dead_lettered", 0.0) + outcomes.get("retried", 0.0)
                _edge_rates(edge, done, failed, outcomes)
            else:
                _edge_rates(edge, None, None, {})
            edges[edge["id"]] = edge

    domains: dict[str, dict[str, Any]] = {}
    for node in nodes.values():
        if node["kind"] == TOPIC:
            domain = domains.setdefault(node["domain"], {"id": node_id(DOMAIN, node["domain"]), "kind": DOMAIN,
                                                         "label": node["domain"], "topics": 0, "url": None})
            domain["topics"] += 1
    return {
        "filters": filters.as_json(),
        **status,
        "thresholds": {"degraded": DEGRADED, "failing": FAILING},
        "nodes": [*sorted(domains.values(), key=lambda n: n["label"]), *nodes.values()],
        "edges": list(edges.values()),
    }
