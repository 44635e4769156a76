"""The charts: what each one shows, for which object, and the one PromQL query behind it.

A chart is named (``topic.published``) and drawn for one object of its model (a topic, a
subscription, an application, a runtime) or for the whole mesh (the home dashboard). The
browser names the chart, the object's id and the time range; the server builds the query here,
from the database's names through ``tracing.promql`` — a browser never sends PromQL.

Each chart is one query, so one request to Prometheus per refresh: charts with several lines
(p50/p95/p99, delivered and retried) join their parts with ``or`` and tell them apart by a
``series`` label. Queries do not depend on the viewer. Where what a viewer may see differs (a
team's private subscriptions in a mesh-wide list), the chart names the label to filter on and
each viewer's websocket drops the series of objects that viewer may not see, so every viewer of
a chart shares one query (``tracing.pollers``).

The runtimes' metrics are documented in docs/runtime.md; the labels Prometheus adds to every
runtime series (``mesh_runtime_id``, ``mesh_application``, …) come from the portal's service
discovery (``tracing.discovery``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import models
from django.urls import reverse

from governance.models import Application
from rollout.models import Runtime
from subscriptions.models import Subscription
from topics.models import Topic

from . import promql
from .promql import histogram_quantile, labelled, rate, regex_any, selector, sum_by, union

__all__ = ["CHARTS", "RANGES", "Chart", "Query", "Range", "charts_for", "describe", "visible_subscription_ids"]

RANGE_CHART, TOP_CHART = "range", "top"
QUANTILES = ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))


@dataclass(frozen=True)
class Range:
    """A time range of the picker: ``step`` between points and how often its charts refresh."""

    name: str
    label: str
    seconds: int
    step: int
    refresh: int

    def scaled(self) -> tuple[int, int, str]:
        """``(step, refresh, rate window)`` for this installation's scrape interval: a point per
        scrape at most, and a rate over at least four scrapes (a rate needs two samples, and
        scrapes arrive with jitter)."""
        scrape = max(1, int(settings.PROMETHEUS_SCRAPE_INTERVAL))
        step = max(self.step, scrape)
        refresh = max(self.refresh, scrape)
        return step, refresh, f"{max(4 * scrape, 2 * step)}s"


RANGES: dict[str, Range] = {r.name: r for r in (
    Range("15m", "15 minutes", 15 * 60, 5, 5),
    Range("1h", "1 hour", 3600, 15, 15),
    Range("6h", "6 hours", 6 * 3600, 60, 60),
    Range("24h", "24 hours", 24 * 3600, 300, 300),
    Range("7d", "7 days", 7 * 24 * 3600, 1800, 900),
)}
DEFAULT_RANGE = "15m"


@dataclass(frozen=True)
class Query:
    """One distinct thing to ask Prometheus: what the shared pollers key on.

    ``describe`` names a label whose values the poller turns into names and links once per
    answer (``subscription``: "billing ← orders.created"), so that no viewer asks the database.
    """

    kind: str  # RANGE_CHART or TOP_CHART
    promql: str
    range: str
    describe: str = ""

    @property
    def key(self) -> str:
        blob = json.dumps([self.kind, self.promql, self.range, self.describe]).encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    def as_json(self) -> dict:
        return {"kind": self.kind, "promql": self.promql, "range": self.range, "describe": self.describe}

    @classmethod
    def from_json(cls, data: dict) -> Query:
        return cls(data["kind"], data["promql"], data["range"], data.get("describe", ""))


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    unit: str
    model: type[models.Model] | None  # None: the whole mesh
    build: Callable[[object, str, str], str]  # (object, rate window, range) -> PromQL
    kind: str = RANGE_CHART
    legend: tuple[str, ...] = ("series",)  # the first of these labels that a series has names it
    #: label whose values are subscription ids: a viewer gets only the series of subscriptions
    #: they may see (``SubscriptionQuerySet``)
    private_label: str = ""
    describe: str = ""
    help: str = ""
    empty: str = "No data in this range."
    limit: int = 10  # rows of a top chart

    def query(self, obj, range_name: str) -> Query:
        _step, _refresh, window = RANGES[range_name].scaled()
        return Query(self.kind, self.build(obj, window, range_name), range_name, self.describe)

    def as_json(self) -> dict:
        return {"name": self.name, "title": self.title, "unit": self.unit, "kind": self.kind,
                "legend": list(self.legend), "help": self.help, "empty": self.empty}


def _rate_sum(metric: str, matchers: dict, window: str, labels: Iterable[str] = ()) -> str:
    return sum_by(rate(selector(metric, matchers), window), labels)


def _series(name: str, metric: str, matchers: dict, window: str) -> str:
    """A metric's rate, summed, as one series of a chart named ``name``."""
    return labelled(_rate_sum(metric, matchers, window), "series", name)


def _quantiles(metric: str, matchers: dict, window: str) -> str:
    return union(labelled(histogram_quantile(q, selector(metric, matchers), window), "series", name)
                 for q, name in QUANTILES)


def _range_window(range_name: str) -> str:
    return f"{RANGES[range_name].seconds}s"


PUBLISHED = "meshruntime_events_published_total"
BYTES = "meshruntime_published_bytes_total"
REFUSALS = "meshruntime_publish_refusals_total"
ROUTED = "meshruntime_routed_copies_total"
DELIVERIES = "meshruntime_deliveries_total"
RETRIES = "meshruntime_delivery_retries_total"
DEAD_LETTERS = "meshruntime_dead_letters_total"
LATENCY = "meshruntime_delivery_latency_seconds_bucket"
LAG = "meshruntime_consumer_lag"
PENDING = "meshruntime_consumer_pending"
APPEND_LATENCY = "meshruntime_append_latency_seconds_bucket"
BATCH = "meshruntime_append_batch_size"
CONFIG_VERSION = "meshruntime_config_version"
STORE_ERRORS = "meshruntime_store_errors_total"


# -- a topic (tab "Traffic") ----------------------------------------------------------------------
def _topic(topic: Topic) -> dict:
    return {"topic": topic.name}


TOPIC_CHARTS = [
    Chart("topic.published", "Published", "events/s", Topic, legend=("application",),
          build=lambda t, w, r: _rate_sum(PUBLISHED, _topic(t), w, ["application"]),
          help="Events accepted and stored, by the application that published them."),
    Chart("topic.refusals", "Refused", "events/s", Topic, legend=("reason",),
          build=lambda t, w, r: _rate_sum(REFUSALS, _topic(t), w, ["reason"]),
          help="Events refused on their way to this topic, by reason (access rule, schema, size, store)."),
    Chart("topic.routed", "Routed copies", "copies/s", Topic, legend=("rule",),
          build=lambda t, w, r: _rate_sum(ROUTED, _topic(t), w, ["rule"]),
          help="Copies of this topic's events that routing rules wrote to other topics, by rule."),
    Chart("topic.bytes", "Bytes published", "bytes/s", Topic, legend=("application",),
          build=lambda t, w, r: _rate_sum(BYTES, _topic(t), w, ["application"]),
          help="Size of the events as stored, by publishing application."),
]


# -- a subscription (tab "Metrics") ---------------------------------------------------------------
def _subscription(subscription: Subscription) -> dict:
    return {"subscription": subscription.subscription_id}


SUBSCRIPTION_CHARTS = [
    Chart("subscription.outcomes", "Deliveries", "events/s", Subscription, legend=("outcome",),
          build=lambda s, w, r: union([
              _rate_sum(DELIVERIES, _subscription(s), w, ["outcome"]),
              labelled(_rate_sum(RETRIES, _subscription(s), w), "outcome", "retried")]),
          help="Delivered (2xx), retried, dead-lettered and filtered out, per second."),
    Chart("subscription.latency", "Delivery latency", "s", Subscription,
          build=lambda s, w, r: _quantiles(LATENCY, _subscription(s), w),
          help="From publish to the subscriber's 2xx: median, 95th and 99th percentile."),
    Chart("subscription.backlog", "Lag and pending", "events", Subscription,
          build=lambda s, w, r: union([
              labelled(f"max ({selector(LAG, _subscription(s))})", "series", "lag"),
              labelled(f"sum ({selector(PENDING, _subscription(s))})", "series", "pending")]),
          help="Lag: events of the topic not yet read. Pending: read, not yet acknowledged."),
    Chart("subscription.dead_letters", "Dead letters", "events/s", Subscription, legend=("reason",),
          build=lambda s, w, r: _rate_sum(DEAD_LETTERS, _subscription(s), w, ["reason"]),
          help="Events moved to the dead-letter stream, by reason."),
]


# -- an application (tab "Traffic") ---------------------------------------------------------------
def _application_subscriptions(application: Application) -> promql.Regex:
    ids = Subscription.objects.filter(application=application).values_list("pk", flat=True)
    return regex_any(f"sub-{pk}" for pk in ids)


APPLICATION_CHARTS = [
    Chart("application.published", "Publishes", "events/s", Application, legend=("topic",),
          build=lambda a, w, r: _rate_sum(PUBLISHED, {"application": a.name}, w, ["topic"]),
          help="Events it published that were stored, by topic."),
    Chart("application.received", "Receives", "events/s", Application, legend=("name", "subscription"),
          build=lambda a, w, r: _rate_sum(
              DELIVERIES, {"outcome": "delivered", "subscription": _application_subscriptions(a)}, w,
              ["subscription"]),
          private_label="subscription", describe="subscription",
          help="Events delivered to its webhooks, by subscription (those you may see)."),
    Chart("application.refusals", "Refused", "events/s", Application, legend=("reason",),
          build=lambda a, w, r: _rate_sum(REFUSALS, {"application": a.name}, w, ["reason"]),
          help="Its events that runtimes refused, by reason."),
]


# -- a runtime (tab "Metrics") --------------------------------------------------------------------
def _runtime(runtime: Runtime) -> dict:
    return {"mesh_runtime_id": runtime.runtime_id}


RUNTIME_CHARTS = [
    Chart("runtime.rates", "Events", "events/s", Runtime,
          build=lambda rt, w, r: union([
              _series("published", PUBLISHED, _runtime(rt), w),
              _series("refused", REFUSALS, _runtime(rt), w),
              _series("delivered", DELIVERIES, {**_runtime(rt), "outcome": "delivered"}, w),
              _series("store errors", STORE_ERRORS, _runtime(rt), w)]),
          help="What this runtime published, refused and delivered, per second."),
    Chart("runtime.append_latency", "Append latency", "s", Runtime,
          build=lambda rt, w, r: _quantiles(APPEND_LATENCY, _runtime(rt), w),
          help="One pipelined append round trip to the event store."),
    Chart("runtime.batch_size", "Append batch size", "events", Runtime,
          build=lambda rt, w, r: union([
              labelled(f"{_rate_sum(BATCH + '_sum', _runtime(rt), w)} / {_rate_sum(BATCH + '_count', _runtime(rt), w)}",
                       "series", "mean"),
              labelled(histogram_quantile(0.99, selector(BATCH + "_bucket", _runtime(rt)), w), "series", "p99")]),
          help="Events per append, coalesced across requests."),
    Chart("runtime.config_version", "Config version", "", Runtime,
          build=lambda rt, w, r: labelled(f"max ({selector(CONFIG_VERSION, _runtime(rt))})", "series", "version"),
          help="The MeshConfig version the runtime applied."),
]


# -- the whole mesh (the home dashboard) ----------------------------------------------------------
MESH_CHARTS = [
    Chart("mesh.events", "Events in the mesh", "events/s", None,
          build=lambda _, w, r: union([
              _series("published", PUBLISHED, {}, w),
              _series("delivered", DELIVERIES, {"outcome": "delivered"}, w)]),
          help="Published and delivered, every topic and subscription together."),
    Chart("mesh.errors", "Errors and refusals", "events/s", None, legend=("reason", "series"),
          build=lambda _, w, r: union([
              _rate_sum(REFUSALS, {}, w, ["reason"]),
              _series("dead letters", DELIVERIES, {"outcome": "dead_lettered"}, w),
              _series("retries", RETRIES, {}, w),
              _series("store errors", STORE_ERRORS, {}, w)]),
          help="Refusals by reason, dead letters, delivery retries and store errors."),
    Chart("mesh.busiest_topics", "Busiest topics", "events/s", None, kind=TOP_CHART, legend=("topic",),
          build=lambda _, w, r: f"topk(10, {_rate_sum(PUBLISHED, {}, _range_window(r), ['topic'])})",
          describe="topic", help="Published per second, averaged over the range.",
          empty="No topic carried events in this range."),
    Chart("mesh.largest_lag", "Largest lag", "events", None, kind=TOP_CHART, legend=("name", "subscription"),
          build=lambda _, w, r: f"max by (subscription) ({selector(LAG)}) > 0",
          private_label="subscription", describe="subscription",
          help="Subscriptions (that you may see) with the most events not yet read.",
          empty="No subscription you may see is behind."),
    Chart("mesh.most_dead_letters", "Most dead letters", "events", None, kind=TOP_CHART,
          legend=("name", "subscription"),
          build=lambda _, w, r: (f"sum by (subscription) (increase({selector(DELIVERIES, {'outcome': 'dead_lettered'})}"
                                 f"[{_range_window(r)}])) > 0"),
          private_label="subscription", describe="subscription",
          help="Subscriptions (that you may see) with the most dead letters in the range.",
          empty="No dead letters in this range for subscriptions you may see."),
]

CHARTS: dict[str, Chart] = {c.name: c for c in (*TOPIC_CHARTS, *SUBSCRIPTION_CHARTS, *APPLICATION_CHARTS,
                                                *RUNTIME_CHARTS, *MESH_CHARTS)}


def charts_for(model: type[models.Model] | None) -> list[Chart]:
    return [chart for chart in CHARTS.values() if chart.model is model]


def visible_subscription_ids(user) -> frozenset[str] | None:
    """The subscription ids (``sub-7``) whose series ``user`` may see; None: all of them (staff)."""
    if user.is_staff or user.is_superuser:
        return None
    return frozenset(f"sub-{pk}" for pk in Subscription.objects.restrict(user).values_list("pk", flat=True))


@dataclass
class Described:
    name: str
    url: str = ""


def _subscription_names(ids: Iterable[str]) -> dict[str, Described]:
    pks = {int(i[4:]): i for i in ids if i.startswith("sub-") and i[4:].isdigit()}
    rows = Subscription.objects.filter(pk__in=pks).values_list("pk", "application__name", "topic__name")
    return {pks[pk]: Described(f"{app} ← {topic}", reverse("subscriptions:subscription", args=[pk]))
            for pk, app, topic in rows}


def _topic_names(names: Iterable[str]) -> dict[str, Described]:
    rows = Topic.objects.filter(name__in=list(names)).values_list("pk", "name")
    return {name: Described(name, reverse("topics:topic", args=[pk])) for pk, name in rows}


_DESCRIBERS: dict[str, Callable[[Iterable[str]], dict[str, Described]]] = {
    "subscription": _subscription_names,
    "topic": _topic_names,
}


def describe(label: str, values: Iterable[str]) -> dict[str, Described]:
    """Names and page links for the values of ``label`` (not filtered by any viewer: the poller
    calls it once per answer, and each viewer's socket drops what its viewer may not see)."""
    describer = _DESCRIBERS.get(label)
    return describer(set(values)) if describer else {}


@dataclass
class Watch:
    """One chart a viewer watches: what the browser calls it, and what the server asks."""

    id: str
    chart: Chart
    object_id: int | None
    query: Query
    allowed: frozenset[str] | None = field(default=None)  # values of ``chart.private_label`` visible
